"""Shared fixtures: tiny corpora, a fast deterministic embedder, and the real shipped data."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.config import DEFAULT_SOURCE, Settings
from rag.embedders import Embedder
from rag.embedders.latents import Latents
from rag.language.analyzer import FrenchAnalyzer
from rag.models import Question
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CNIL_DIR = SHARED / "benchmarks" / "cnil-faq"


def Q(query: str, k: int | None = None, filters: dict | None = None, history: list[str] | None = None) -> Question:
    """A question as every interface hands it to the service."""
    return Question(query=query, k=k, filters=filters or {}, history=history or [])


class HashEmbedder(Embedder):
    """Bag of stemmed words hashed into 256 dims: fast, deterministic, lexical. For unit tests."""

    name = "test/hash-256"
    dim = 256
    max_tokens = 64

    def __init__(self) -> None:
        self.analyzer = FrenchAnalyzer()
        self.calls = 0

    def load(self) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for term in self.analyzer(text):
                out[row, int(hashlib.md5(term.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)

    def encode_queries(self, texts):
        return self._encode(list(texts))

    def encode_passages(self, texts):
        return self._encode(list(texts))


class LatentHashEmbedder(HashEmbedder):
    """The hash embedder with latent terms too: each stemmed word a latent term. Records what it encoded."""

    name = "test/hash-256-latents"
    latent_dim = 512

    def __init__(self) -> None:
        super().__init__()
        self.latent_texts: list[str] = []

    def encode_latents(self, texts, query: bool = False) -> Latents:
        self.latent_texts += list(texts)
        out = np.zeros((len(texts), self.latent_dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for term in self.analyzer(text):
                out[row, int(hashlib.md5(term.encode()).hexdigest(), 16) % self.latent_dim] = 1.0
        return Latents.from_dense(out)


class Recorded:
    """An answer log that keeps what it is given, in memory (where a channel's recording is looked at)."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, object, str, bool]] = []

    def record_answer(self, answer_id: str, answer, channel: str = "api", question: bool = True) -> None:
        self.answers.append((answer_id, answer, channel, question))


TINY_FAQ = [
    {
        "id": "psc",
        "question": "Comment se connecter avec Pro Santé Connect ?",
        "answer": "La connexion passe par Pro Santé Connect avec une carte CPS ou une e-CPS. "
        "Le logiciel redirige vers le navigateur.",
        "url": "https://example.org/faq/psc",
        "theme": "identité",
    },
    {
        "id": "solde",
        "question": "Comment demander le paiement du solde ?",
        "answer": "La demande de solde se dépose auprès de l'ASP avec la vérification d'aptitude signée par le client.",
        "theme": "financement",
    },
    {
        "id": "mss",
        "question": "Quelle messagerie sécurisée utiliser ?",
        "answer": "Toute messagerie MSSanté référencée convient. "
        "Voir https://mssante.fr/is/doc-technique pour les détails.",
        "theme": "messagerie",
    },
]


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def latent_embedder() -> LatentHashEmbedder:
    return LatentHashEmbedder()


@pytest.fixture
def tiny_jsonl(tmp_path: Path) -> Path:
    import json

    path = tmp_path / "tiny.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in TINY_FAQ) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tiny_settings(tmp_path: Path, tiny_jsonl: Path) -> Settings:
    return Settings(
        sources=[tiny_jsonl], index_dir=tmp_path / "built", min_confidence=0.0, feedback_db=tmp_path / "fb.sqlite3"
    )


@pytest.fixture
def make_service(tiny_settings: Settings, hash_embedder: HashEmbedder):
    """A built service over the tiny FAQ with the hash embedder; keyword arguments change settings."""

    def make(**changes: object) -> QueryService:
        service = QueryService(tiny_settings.replace(**changes), hash_embedder)
        Publisher(service).build()
        return service

    return make


@pytest.fixture(scope="session")
def segur_index(tmp_path_factory) -> Path:
    """The shipped Ségur FAQ indexed once per test session with the default settings (read-only)."""
    index_dir = tmp_path_factory.mktemp("segur") / "idx"
    Publisher(QueryService(Settings(index_dir=index_dir))).build()
    return index_dir


@pytest.fixture(scope="session")
def segur_source() -> Path:
    return DEFAULT_SOURCE


@pytest.fixture(scope="session")
def cnil_faq() -> Path:
    path = CNIL_DIR / "faq.jsonl"
    if not path.exists():
        pytest.fail(f"the CNIL benchmark is expected at {path}")
    return path


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster for the session (Debian's binaries; `.ci/run` installs them)."""
    from .services import postgres

    with postgres() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_url():
    """A throwaway Redis server for the session."""
    from .services import redis

    with redis() as server:
        yield server.url


ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from Debian's package, driven by Playwright (no browser download); one per module, as
    Playwright's loop holds the main thread while it runs."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium for the browser tests (scripts/bootstrap.sh installs it)")
        pytest.skip("no chromium on this machine: `apt-get install chromium` to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
def store(request, tmp_path: Path):
    """A feedback store, empty: the same tests run against SQLite and PostgreSQL."""
    from rag.store import Store
    from rag.store.database import SqliteDatabase
    from rag.store.postgres import PostgresDatabase

    if request.param == "sqlite":
        made = Store(SqliteDatabase(tmp_path / "fb.sqlite3")).open()
    else:
        made = Store(PostgresDatabase(request.getfixturevalue("postgres_url"))).open(wait=30)
        made.db.run("TRUNCATE feedback, answers, resolved, curated, leases")
    yield made
    made.close()
