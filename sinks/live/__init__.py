"""Live push: results from the result topics to the WebSocket clients connected to this process."""

from sinks.live.hub import ResultsHub, Subscription

__all__ = ["ResultsHub", "Subscription"]
