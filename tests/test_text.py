"""Shared text rules: chunking, sentences, the French analyzer, the glossary and language detection."""

from rag.corpus.chunking import chunk_entry
from rag.language.analyzer import FrenchAnalyzer, fold
from rag.language.detect import detect
from rag.language.glossary import Glossary
from rag.language.text import split_sentences
from rag.models import Entry


def count(text: str) -> int:
    return len(text.split())


def test_short_answer_is_one_chunk_with_question_and_link() -> None:
    entry = Entry(id="e1", question="Quoi ?", answer="Une réponse courte.", url="https://x.org/e1")
    (chunk,) = chunk_entry(entry, count, max_tokens=50)
    assert (chunk.entry_id, chunk.position, chunk.text, chunk.url) == (
        "e1",
        0,
        "Une réponse courte.",
        "https://x.org/e1",
    )
    assert chunk.embed_text == "Quoi ?\nUne réponse courte."


def test_long_answer_splits_on_paragraphs_then_sentences_with_overlap() -> None:
    paragraphs = [" ".join(f"p{p}s{s}w{w}" for w in range(4)) + "." for p in range(3) for s in range(1)]
    long_paragraph = " ".join(f"Phrase numéro {i} avec des mots." for i in range(12))
    entry = Entry(id="long", question="Question ?", answer="\n".join([*paragraphs, long_paragraph]))
    chunks = chunk_entry(entry, count, max_tokens=20, overlap=1)
    assert len(chunks) > 2
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert all(count(c.text) <= 20 - count("Question ?") for c in chunks)
    assert all(c.question == "Question ?" for c in chunks)
    # every sentence of the answer is in some chunk, and consecutive chunks share one unit
    joined = "\n".join(c.text for c in chunks)
    for i in range(12):
        assert f"Phrase numéro {i} avec des mots." in joined
    for previous, current in zip(chunks, chunks[1:]):
        assert previous.text.split("\n")[-1] == current.text.split("\n")[0]
    # paragraph boundaries are kept: a short paragraph is never cut
    assert any(c.text.startswith(paragraphs[0]) for c in chunks)


def test_split_sentences() -> None:
    assert split_sentences("Oui. Le compte est fermé ! Voir le §8.3.2.2 du DST. Fin") == [
        "Oui.",
        "Le compte est fermé !",
        "Voir le §8.3.2.2 du DST.",
        "Fin",
    ]


def test_french_analyzer_folds_stems_and_drops_stopwords() -> None:
    analyzer = FrenchAnalyzer()
    assert fold("Ségur Œuvre Élève") == "segur œuvre eleve"
    assert analyzer("L’accès aux dérogations") == analyzer("acces derogation")
    assert analyzer("les demandes de solde") == ["demand", "sold"]
    assert analyzer("de la et le") == []


def test_glossary_expands_both_ways_and_respects_short_acronym_case() -> None:
    glossary = Glossary([["PSC", "Pro Santé Connect"], ["VA", "vérification d'aptitude"]])
    assert glossary.expansions("connexion PSC") == ["Pro Santé Connect"]
    assert glossary.expansions("via pro sante connect") == ["PSC"]
    assert glossary.expansions("la VA signée") == ["vérification d'aptitude"]
    assert glossary.expansions("il va signer") == []
    assert glossary.expand("rien") == "rien"


def test_language_detection() -> None:
    assert detect("How do I request the final payment?") == "en"
    assert detect("Comment demander le solde ?") == "fr"
    assert detect("PSC CIBA") == "fr"
