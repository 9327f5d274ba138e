"""The ``rag`` command as a user runs it: a real process, the real default embedder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def rag(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    index_dir = tmp_path_factory.mktemp("cli") / "idx"
    done = rag("index", "--index-dir", str(index_dir))
    assert done.returncode == 0, done.stderr
    assert "indexed 20 entries" in done.stderr
    return index_dir


def test_search_json_gives_one_line_per_question(built: Path) -> None:
    done = rag(
        "search",
        "--json",
        "-k",
        "2",
        "--index-dir",
        str(built),
        "Comment déposer une demande de solde ?",
        "Quelle est la recette de la tarte tatin ?",
    )
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first["query"] == "Comment déposer une demande de solde ?" and not first["abstained"]
    assert len(first["results"]) == 2
    assert set(first["results"][0]) == {"id", "question", "text", "score", "url", "metadata"}
    assert 0.0 <= first["confidence"] <= 1.0
    assert second["abstained"] and second["results"] == []


def test_ask_json_and_table_output(built: Path) -> None:
    done = rag("ask", "--json", "--index-dir", str(built), "Peut-on déposer plusieurs preuves dans un seul fichier ?")
    payload = json.loads(done.stdout)
    assert set(payload) >= {"query", "answer", "abstained", "citations", "passages"}
    assert payload["citations"] and set(payload["citations"][0]) == {"n", "id", "url", "metadata"}
    assert payload["citations"][0]["url"].startswith("http://")  # absolute, as in every interface
    assert "séparément" in payload["answer"]
    text = rag("ask", "--index-dir", str(built), "Peut-on déposer plusieurs preuves dans un seul fichier ?")
    assert "Sources" in text.stdout and "[1]" in text.stdout
    table = rag("search", "--index-dir", str(built), "solde")
    assert "score" in table.stdout and "/entries/" in table.stdout


def test_index_from_another_source(tmp_path: Path, tiny_jsonl: Path) -> None:
    done = rag("index", "--source", str(tiny_jsonl), "--index-dir", str(tmp_path / "idx"))
    assert done.returncode == 0, done.stderr
    assert "indexed 3 entries" in done.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("search", "--index-dir", "/nonexistent/idx", "q"), "Run `rag index`"),
        (("index", "--source", "/nonexistent/faq.jsonl", "--index-dir", "/tmp/x"), "file not found"),
        (("index", "--index-dir", "/proc/nope"), "cannot use /proc/nope"),
        (("index", "--index-dir", "/proc/nope/idx"), "cannot use /proc/nope"),
        (("serve", "--index-dir", "/proc/nope", "--port", "9"), "cannot use /proc/nope"),
        (("search", "--index-dir", "/proc/nope", "VA signée [/] ?"), "Run `rag index`"),
        (("index", "--source", str(Path(__file__)), "--index-dir", "/tmp/x"), "unknown file type"),
    ],
)
def test_errors_are_one_clear_line_without_traceback(args: tuple[str, ...], expected: str) -> None:
    done = rag(*args)
    assert done.returncode == 1
    assert expected in done.stderr
    assert "Traceback" not in done.stderr and "embedding" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_markup_in_a_question_is_printed_as_written(built: Path) -> None:
    done = rag("search", "--index-dir", str(built), "VA signée [/] [bold]?")
    assert done.returncode == 0 and "[/] [bold]?" in done.stdout, done.stderr


def test_a_plain_install_works_from_any_folder(tmp_path: Path) -> None:
    """``pip install .`` (not editable) carries the shipped FAQ, its glossary, the prompts and the calibration."""
    root = Path(__file__).resolve().parent.parent
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(root)], check=True, capture_output=True)
    wheel = next(wheels.glob("*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "COLUMNS": "200"}
    where = subprocess.run(
        [sys.executable, "-c", "import rag; print(rag.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(target)), where  # the installed copy, not the source tree
    index = subprocess.run(
        [sys.executable, "-m", "rag.cli", "index"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert index.returncode == 0 and "indexed 20 entries" in index.stderr, index.stderr
    ask = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ask", "--json", "Comment déposer une demande de solde ?"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    answer = json.loads(ask.stdout)
    assert not answer["abstained"] and answer["citations"], ask.stderr
    assert (elsewhere / "index" / "built" / "current" / "manifest.json").exists()


def test_search_filters_on_metadata(tmp_path: Path, tiny_jsonl: Path) -> None:
    index_dir = tmp_path / "idx"
    assert rag("index", "--source", str(tiny_jsonl), "--index-dir", str(index_dir)).returncode == 0
    question = "Quelle messagerie sécurisée utiliser ?"
    done = rag("search", "--json", "--index-dir", str(index_dir), "--filter", "theme=messagerie", question)
    assert [r["id"] for r in json.loads(done.stdout)["results"]] == ["mss"], done.stderr
    other = rag("search", "--json", "--index-dir", str(index_dir), "--filter", "theme=financement", question)
    assert {r["id"] for r in json.loads(other.stdout)["results"]} <= {"solde"}
    wrong = rag("search", "--index-dir", str(index_dir), "--filter", "theme", "solde")
    assert wrong.returncode == 1 and "FIELD=VALUE" in wrong.stderr


def test_a_retired_setting_is_one_clear_error() -> None:
    done = rag("search", "solde", env={"RAG_MIN_SCORE": "2.0"})
    assert done.returncode == 1 and "RAG_MIN_CONFIDENCE" in done.stderr and "Traceback" not in done.stderr


def test_the_default_k_is_the_setting(built: Path) -> None:
    done = rag(
        "search",
        "--json",
        "--index-dir",
        str(built),
        "Comment déposer une demande de solde ?",
        env={"RAG_DEFAULT_K": "3"},
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["results"]) == 3
    answer = rag(
        "ask", "--json", "--index-dir", str(built), "Comment déposer une demande de solde ?", env={"RAG_DEFAULT_K": "2"}
    )
    assert len(json.loads(answer.stdout)["passages"]) == 2


def test_rag_index_sync_and_sources_check_on_a_faq_website(tmp_path: Path) -> None:
    from rag.egress import host_port

    from .faq_site import EXPECTED, FaqSite
    from .servers import running

    site = FaqSite()
    with running(site.app, ready_path=None) as base:
        site.base = base
        index_dir = str(tmp_path / "site")
        env = {"RAG_SELF_CALIBRATION": "never", "RAG_WEB_REQUEST_INTERVAL": "0", "RAG_EGRESS_ALLOW": host_port(base)}
        built = rag("index", "--source", base + "/sitemap.xml", "--index-dir", index_dir, env=env)
        assert built.returncode == 0, built.stderr
        assert f"indexed {len(EXPECTED)} entries" in built.stderr and "robots.txt disallows it" in built.stderr
        site.pages["/faq/details.html"] = site.pages["/faq/details.html"].replace("requise", "requise par le Ségur")
        synced = rag("sync", "--index-dir", index_dir, "--json", env=env)
        assert synced.returncode == 0, synced.stderr
        summary = json.loads(synced.stdout)
        assert summary["published"] and len(summary["changed"]) == 1 and summary["added"] == summary["removed"] == []
        again = rag("sync", "--index-dir", index_dir, env=env)
        assert again.returncode == 0 and "nothing changed" in again.stdout
        checked = rag("sources", "check", "--index-dir", index_dir, "--json", env=env)
        kinds = {f["kind"] for f in json.loads(checked.stdout)["findings"]}
        assert kinds == {"no_entries"}  # /about.html has no FAQ, /private/ is refused by robots.txt
        asked = rag("ask", "--json", "--index-dir", index_dir, "Faut-il une messagerie sécurisée ?", env=env)
        answer = json.loads(asked.stdout.splitlines()[0])
        assert answer["citations"][0]["url"] == base + "/faq/details.html#mss"
        assert answer["citations"][0]["checked_on"]
