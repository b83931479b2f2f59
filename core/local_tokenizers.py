"""Tokenizers built on this machine, for models that ship no tokenizer files of their own
(the demo family, and the tiny pipelines the tests build). No download is involved."""
from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

_CHARS = string.ascii_lowercase + string.digits + ".,!?'-:;()&/"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def clip_vocab(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP BPE vocabulary in which every listed word is one token and any other word
    falls back to its characters."""
    vocab: dict[str, int] = {}

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    add(BOS)
    add(EOS)
    for c in _CHARS:
        add(c)
        add(c + "</w>")
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}

    def bpe(pieces: list[str]) -> list[str]:
        # byte-pair encoding as the tokenizer runs it: merge the best-ranked adjacent pair first
        while len(pieces) > 1:
            pairs = [(ranks.get(p, len(ranks)), i) for i, p in enumerate(zip(pieces, pieces[1:]))]
            rank, i = min(pairs)
            if rank == len(ranks):
                break
            pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2:]
        return pieces

    for word in words:
        word = word.lower()
        pieces = bpe(list(word[:-1]) + [word[-1] + "</w>"])
        # a merge added last has the lowest priority, so it never changes how an earlier
        # word splits; merging what BPE leaves of this word until one token remains makes
        # every listed word a single token even where words share prefixes
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            add(pair[0] + pair[1])
            pieces = bpe(pieces)
    return vocab, merges


def clip_tokenizer(words: list[str], max_length: int = 77):
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab(words)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab))
        merges_file.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
        return CLIPTokenizer(
            str(vocab_file), str(merges_file), model_max_length=max_length,
            bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS,
        )


def t5_vocab(words: list[str]) -> list[tuple[str, float]]:
    """A Unigram vocabulary in T5's layout (pad 0, eos 1, unk 2): every listed word is one
    piece, and any other word falls back to its characters."""
    pieces: dict[str, float] = {"<pad>": 0.0, "</s>": 0.0, "<unk>": 0.0, "\u2581": -2.0}
    for word in words:
        pieces.setdefault("\u2581" + word.lower(), -1.0)
    for c in _CHARS:
        pieces.setdefault("\u2581" + c, -4.0)
        pieces.setdefault(c, -5.0)
    return list(pieces.items())


def t5_tokenizer(words: list[str], max_length: int = 512):
    """A T5 tokenizer (Unigram, as the real one is) over a small vocabulary; its
    save_pretrained writes tokenizer.json, which T5Tokenizer loads back as is."""
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=t5_vocab(words), extra_ids=0, model_max_length=max_length)
