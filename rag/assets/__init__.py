"""Data shipped with the package: the default FAQ and the prompt templates."""
