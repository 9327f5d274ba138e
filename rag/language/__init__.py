"""Text rules every stage shares: French analysis for BM25, language detection, sentences, the glossary,
small talk."""
