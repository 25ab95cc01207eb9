"""Audio ingest: sources that publish audio frames and lifecycle events to Kafka."""
