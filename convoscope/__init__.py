"""convoscope: self-hosted conversation intelligence on Kafka."""

__version__ = "0.1.0"
