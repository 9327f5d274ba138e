"""Index versions: built from a corpus and an embedder, kept on disk behind an atomically swapped pointer,
with the confidence's fit they carry."""
