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
    for word in words:
        word = word.lower()
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for nxt in pieces[1:]:
            if (current, nxt) not in merges:
                merges.append((current, nxt))
            current += nxt
            add(current)
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
