"""Prompt templates for LLM-drafted answers (``${name}`` variables)."""
