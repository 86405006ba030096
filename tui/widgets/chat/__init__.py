"""Chat: one conversation column per model."""
