"""Stream processors: consume one topic, transform, produce to others (transcription, ...)."""
