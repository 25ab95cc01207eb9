"""Conversation insights: questions, action items, follow-ups, entities, trackers, topics, sentiment.

Pure parts (no Kafka): ``language`` (shared spaCy pipeline, ASR clean-up) and ``detect`` (questions, action items,
follow-ups).
"""
