"""Cited answers over FAQ corpora."""

__version__ = "0.1.0"
