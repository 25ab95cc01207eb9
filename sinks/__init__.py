"""Sinks: where results leave the pipeline (database, live clients, ...)."""
