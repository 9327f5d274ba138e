"""Cited answers over FAQ corpora."""

import os

# OpenMP threads (the encoder's, FAISS's) sleep while they wait for work instead of spinning: beside
# another busy process (a build, a second worker, a local LLM) spinning threads take the cores from the
# threads doing the work. The OpenMP runtimes read this once, when they load, so it is set first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
