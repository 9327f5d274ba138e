"""Writing the answer: the extractive answer (the most relevant sentences, each cited) and the replies that need
no search (a decline, small talk, a request for a person); an LLM-drafted answer falls back to them."""
