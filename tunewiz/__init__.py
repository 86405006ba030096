"""tunewiz: a terminal wizard for fine-tuning LLMs."""

__version__ = "0.1.0"
