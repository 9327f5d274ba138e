"""The documentation stays true: every setting is documented, every setting named exists, every link leads to a
file, and the examples of the configuration page are settings the service accepts."""

from __future__ import annotations

import re

import pytest

from rag.config import FLAT, RETIRED, load_settings

from .conftest import ROOT

PAGES = [ROOT / "README.md", ROOT / "eval" / "README.md", ROOT / "bench" / "README.md", *(ROOT / "docs").glob("*.md")]
NOT_SETTINGS = {"RAG_EVAL_API_KEY"}  # read by `rag eval` alone, not a setting of the service
NAME = re.compile(r"\bRAG_[A-Z0-9_]*[A-Z0-9]\b")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_setting_is_on_the_configuration_page() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert [f"RAG_{name.upper()}" for name in FLAT if f"RAG_{name.upper()}" not in page] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_setting_named_exists(page) -> None:
    known = {f"RAG_{name.upper()}" for name in FLAT} | {f"RAG_{name.upper()}" for name in RETIRED} | NOT_SETTINGS
    assert set(NAME.findall(page.read_text(encoding="utf-8"))) - known == set()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_leads_to_a_file(page) -> None:
    targets = [t for t in LINK.findall(page.read_text(encoding="utf-8")) if "://" not in t]
    assert [t for t in targets if not (page.parent / t).exists()] == []


def test_the_defaults_on_the_configuration_page_are_the_service_s() -> None:
    settings = load_settings()
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name, value in (
        ("RAG_DEFAULT_K", settings.retrieval.default_k),
        ("RAG_SELF_CALIBRATION", settings.index.self_calibration),
        ("RAG_CALIBRATION_ENTRIES", settings.index.calibration_entries),
        ("RAG_EMBEDDER", settings.index.embedder),
        ("RAG_FUSION", settings.retrieval.fusion),
    ):
        row = next(line for line in page.splitlines() if line.startswith(f"| `{name}`"))
        assert f"`{value}`" in row, row


def test_the_widget_attributes_documented_are_those_it_reads() -> None:
    page = (ROOT / "docs" / "channels.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `data-([a-z]+)`", page, re.M))
    script = (ROOT / "rag" / "web" / "static" / "widget.js").read_text(encoding="utf-8")
    assert documented and documented == set(re.findall(r"\boptions\.([a-z]+)", script))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_named_exists(page) -> None:
    named = set(re.findall(r"`(rag/[\w/]+(?:\.py)?)`", page.read_text(encoding="utf-8")))
    assert sorted(p for p in named if not (ROOT / p).exists()) == []
