"""Reading FAQ files: the Ségur export, JSON, JSONL, CSV and Markdown, ids, duplicates, links and encodings."""

import json
from pathlib import Path

import pytest

from rag.corpus.sources import content_id, extract_links, load_corpus, load_file
from rag.errors import SourceError


def test_segur_export_gives_twenty_entries(segur_source: Path) -> None:
    entries = load_file(segur_source)
    assert len(entries) == 20
    assert entries[0].answer == (
        "Dans le cas d’un professionnel exerçant en libéral, l’unité comptabilisée est le professionnel "
        "inscrit au répertoire RPSS."
    )
    assert entries[-1].answer.startswith("Nous vous invitons à vous référer au DSR et au REM")
    assert entries[-1].links == [
        "https://industriels.esante.gouv.fr/segur-du-numerique-en-sante/toutes-les-ressources-du-segur"
    ]
    assert not any("Votre question concerne" in e.answer for e in entries)
    assert all("Cette réponse vous a-t-elle été utile" not in e.answer for e in entries)


def test_segur_titles_overlay_gives_every_entry_a_question(segur_source: Path) -> None:
    entries = load_file(segur_source)
    assert all(e.question for e in entries)


def test_cnil_jsonl_loads_unchanged(cnil_faq: Path) -> None:
    corpus = load_corpus([cnil_faq])
    assert len(corpus.entries) == 523
    first = corpus.entries[0]
    assert first.id == "cnil-0" and first.question == "Comment faire supprimer un compte Badoo ?"
    assert first.metadata == {"theme": "Internet", "sous_theme": "Particuliers"}
    assert first.url.startswith("https://www.cnil.fr/")
    assert sum(e.url is None for e in corpus.entries) == 35
    assert any("same text" in w for w in corpus.warnings)


def test_ids_are_stable_across_rebuild_and_reorder(tmp_path: Path) -> None:
    blocks = ["Première réponse.", "Deuxième réponse, plus longue.", "Troisième."]
    sep = "\nCette réponse vous a-t-elle été utile ?\n"
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(sep.join(blocks) + sep, encoding="utf-8")
    b.write_text(sep.join(reversed(blocks)) + sep, encoding="utf-8")
    ids_a = {e.answer: e.id for e in load_file(a)}
    ids_b = {e.answer: e.id for e in load_file(b)}
    assert ids_a == ids_b == {e.answer: e.id for e in load_file(a)}
    assert len(set(ids_a.values())) == 3


def test_duplicates_are_reported_and_kept_once(tmp_path: Path) -> None:
    path = tmp_path / "dup.txt"
    sep = "\nCette réponse vous a-t-elle été utile ?\n"
    path.write_text(sep.join(["Même réponse.", "Autre réponse.", "Même réponse."]) + sep, encoding="utf-8")
    corpus = load_corpus([path])
    assert [e.answer for e in corpus.entries] == ["Même réponse.", "Autre réponse."]
    assert len(corpus.warnings) == 1 and "twice" in corpus.warnings[0]


def test_csv_and_markdown_and_json(tmp_path: Path) -> None:
    csv_path = tmp_path / "faq.csv"
    csv_path.write_text(
        'id,question,answer,theme\n1,"Q un ?","Réponse, avec virgule.",t1\n2,,Sans question,t2\n',
        encoding="utf-8",
    )
    entries = load_file(csv_path)
    assert [(e.id, e.question, e.answer, e.metadata) for e in entries] == [
        ("1", "Q un ?", "Réponse, avec virgule.", {"theme": "t1"}),
        ("2", None, "Sans question", {"theme": "t2"}),
    ]
    md = tmp_path / "faq.md"
    md.write_text(
        "# FAQ\n\n## Première question ?\nLa réponse.\n\nSuite.\n## Deuxième ?\nAutre https://x.org/a.\n",
        encoding="utf-8",
    )
    entries = load_file(md)
    assert [e.question for e in entries] == ["Première question ?", "Deuxième ?"]
    assert entries[0].answer == "La réponse.\n\nSuite."
    assert entries[1].links == ["https://x.org/a"]
    js = tmp_path / "faq.json"
    js.write_text(json.dumps({"entries": [{"answer": "A", "url": "https://u"}]}), encoding="utf-8")
    (entry,) = load_file(js)
    assert entry.url == "https://u" and entry.id == content_id(None, "A")


def test_extract_links_strips_trailing_punctuation() -> None:
    text = "Voir https://a.fr/x. Puis (https://b.fr/y) et https://a.fr/x encore"
    assert extract_links(text) == ["https://a.fr/x", "https://b.fr/y"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.jsonl", None, "file not found"),
        ("empty.jsonl", b"  \n", "empty"),
        (
            "binary.txt",
            bytes(range(256)) * 4,
            "line 2: byte 128 is not valid UTF-8 and the encoding is unknown",
        ),
        (
            "noanswer.jsonl",
            b'{"answer": "ok"}\n{"question": "sans reponse"}\n',
            "line 2: the record has no 'answer'",
        ),
        ("bad.jsonl", b'{"answer": "ok"}\n{"answer": \n', "line 2: malformed JSON"),
        ("bad.json", b'[{"answer": "ok"},\n {"answer": }]', "line 2: malformed JSON"),
        ("noanswer.json", b'[{"answer": "ok"}, {"answer": ""}]', "record 2: the record has no 'answer'"),
        ("bad.csv", b'question,answer\n"q","a"b"\n', "malformed CSV"),
        ("extra.csv", b"question,answer\nq,a,extra\n", "line 2: the row has more fields"),
        ("nohead.csv", b"question,reponse\nq,a\n", "no 'answer' column"),
        ("plain.txt", b"just some text\n", "no line 'Cette r"),
        ("faq.xml", b"<faq/>", "unknown file type"),
        ("nohead.md", b"Just text\n", "no '## ' heading"),
    ],
)
def test_bad_input_gives_a_clear_error(tmp_path: Path, name: str, content: bytes | None, expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError) as info:
        load_corpus([path])
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_same_id_on_two_texts_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "clash.jsonl"
    path.write_text('{"id": "x", "answer": "a"}\n{"id": "x", "answer": "b"}\n', encoding="utf-8")
    with pytest.raises(SourceError, match="id 'x' is used by two different entries"):
        load_corpus([path])


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "JavaScript:alert(1)", " java\tscript:alert(1)", "data:text/html,x", "vbscript:x"]
)
def test_only_web_and_relative_links_are_kept(tmp_path: Path, url: str) -> None:
    path = tmp_path / "faq.jsonl"
    rows = [
        {"id": "bad", "answer": "Réponse.", "url": url, "links": [url, "https://ok.example/a"]},
        {"id": "rel", "answer": "Autre.", "url": "/faq/rel"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    corpus = load_corpus([path])
    bad, rel = corpus.entries
    assert bad.url is None and bad.links == ["https://ok.example/a"] and rel.url == "/faq/rel"
    assert any("not http(s)" in w for w in corpus.warnings)


def test_csv_as_spreadsheets_export_it(tmp_path: Path) -> None:
    """French Excel: ';' between fields, cp1252 bytes, headers in any case."""
    path = tmp_path / "mairie.csv"
    text = 'Question;ANSWER;Thème\n"Quand ouvre l\'accueil ?";"Le lundi à 8 h 30, même l’été.";accueil\n'
    path.write_bytes(text.encode("cp1252"))
    (entry,) = load_corpus([path]).entries
    assert entry.question == "Quand ouvre l'accueil ?" and entry.answer == "Le lundi à 8 h 30, même l’été."
    assert entry.metadata == {"Thème": "accueil"}
    tabbed = tmp_path / "tab.csv"
    tabbed.write_text("answer\tid\nRéponse une.\tun\nRéponse deux.\tdeux\n", encoding="utf-8")
    assert [e.id for e in load_corpus([tabbed]).entries] == ["un", "deux"]


def test_a_latin_1_export_is_read_as_such(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Réponse à l'été.\nCette réponse vous a-t-elle été utile ?\n".encode("latin-1"))
    assert [e.answer for e in load_corpus([path]).entries] == ["Réponse à l'été."]
