"""The default FAQ: the Ségur du numérique en santé export, its question titles and its glossary."""
