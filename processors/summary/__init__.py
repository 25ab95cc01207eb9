"""Conversation summaries: extractive (pure, always available) and abstractive (an OpenAI-compatible chat
endpoint, when configured, falling back to extractive)."""
