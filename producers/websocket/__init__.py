"""The streaming WebSocket gateway (Symbl Streaming API, `/v1/streaming/{connectionId}`)."""

from producers.websocket.endpoint import streaming_routes

__all__ = ["streaming_routes"]
