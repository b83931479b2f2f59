"""Prompts longer than a text encoder reads: counted with the stage's own tokenizers when
it runs, so the user learns which words were cut instead of wondering why they do nothing."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import lru_cache

TOKENIZERS = ("tokenizer", "tokenizer_2", "tokenizer_3")
_NO_LIMIT = 100_000  # tokenizers without a limit of their own say so with a huge model_max_length
BOS, EOS = "<|startoftext|>", "<|endoftext|>"  # CLIP's markers, where a tokenizer_config does not name them


def token_limit(pipe, tokenizer) -> int | None:
    """How many tokens the pipeline feeds its encoder from this tokenizer: the tokenizer's
    own maximum for CLIP; for the others (T5, Qwen...) the pipeline's max_sequence_length."""
    own = getattr(tokenizer, "model_max_length", None)
    own = own if isinstance(own, int) and 0 < own < _NO_LIMIT else None
    if "CLIP" in type(tokenizer).__name__:
        return own
    try:
        param = inspect.signature(pipe).parameters.get("max_sequence_length")
    except (TypeError, ValueError):  # not a callable pipeline
        param = None
    default = param.default if param is not None else None
    return default if isinstance(default, int) and default > 0 else own


def truncation_notices(pipe, prompts: dict[str, str], where: str) -> list[str]:
    """One line per prompt ("prompt", "negative prompt") longer than an encoder reads."""
    notices = []
    for name, prompt in prompts.items():
        if not prompt or not prompt.strip():
            continue
        cut: list[str] = []
        tail = ""
        for attr in TOKENIZERS:
            tokenizer = getattr(pipe, attr, None)
            limit = token_limit(pipe, tokenizer) if tokenizer is not None else None
            if limit is None:
                continue
            try:
                ids = tokenizer(prompt, truncation=False, verbose=False)["input_ids"]
            except Exception:  # a tokenizer that cannot count this prompt only loses the notice
                continue
            if len(ids) > limit:
                cut.append(f"{attr} reads {limit} of its {len(ids)} tokens")
                if not tail:
                    tail = tokenizer.decode(ids[max(0, limit - 1):limit + 5], skip_special_tokens=True).strip()
        if cut:
            start = f", from “{tail}…”" if tail else ""
            notices.append(f"{where}: the {name} is longer than the text encoder reads ({'; '.join(cut)}): "
                           f"the rest is ignored{start}")
    return notices


# ---------------------------------------------------------------- before the run

# What the window shows while a prompt is edited: counted with the model's own tokenizer
# files through the `tokenizers` library (no torch, no transformers, so the GUI thread may
# ask), loaded once per model folder. Only CLIP is counted: its 77-token window is the one
# users hit, and a model that also has a T5 or an LLM encoder still reads the rest there.


@dataclass(frozen=True)
class Cut:
    """A prompt longer than the stage's text encoder reads."""

    what: str  # "prompt" or "negative prompt"
    tokens: int  # the prompt's tokens, start and end markers included, as the limit counts them
    limit: int
    encoder: str  # "CLIP"
    cut: str  # the prompt's words past the limit, as written

    def notice(self) -> str:
        words = self.cut if len(self.cut) <= 80 else self.cut[:77].rstrip() + "…"
        return f"{self.what} is {self.tokens} tokens; {self.encoder} reads {self.limit}: “{words}” are cut"


def stage_cuts(project, stage) -> list[Cut]:
    """The stage's effective prompt and negative prompt (the project's, or the stage's own,
    plus its detail terms), each when its model's text encoder cuts it."""
    out = []
    for what, text in (("prompt", stage.effective_prompt(project.prompt)),
                       ("negative prompt", stage.effective_negative(project.negative_prompt))):
        cut = prompt_cut(stage.model, what, text)
        if cut is not None:
            out.append(cut)
    return out


def prompt_cut(ref: str, what: str, prompt: str) -> Cut | None:
    """How `prompt` fits the model's CLIP tokenizer; None when it fits, or when the model's
    tokenizers are not on disk (not downloaded yet) or are not CLIP's alone."""
    if not prompt or not prompt.strip():
        return None
    folder = _model_folder(ref)
    found = _counter(str(folder)) if folder is not None else None
    if found is None:
        return None
    tokenizer, limit = found
    encoding = tokenizer.encode(prompt)
    if len(encoding.ids) <= limit:
        return None
    # The encoder reads limit - 1 tokens and its end marker: the token at limit - 1 is the first cut.
    start = encoding.offsets[limit - 1][0]
    return Cut(what, len(encoding.ids), limit, "CLIP", prompt[start:].strip())


def _model_folder(ref: str):
    """The diffusers folder a reference's tokenizers are in, without building or fetching
    anything: None when they are not on disk."""
    from pathlib import Path

    from core.errors import ModelError
    from core.models import parse_ref

    try:
        parsed = parse_ref(ref or "")
    except ModelError:
        return None
    if parsed.kind == "builtin":
        from core import demo, paths

        for folder in (demo.DEMO_DIR / parsed.location, paths.cache_dir() / "demo-random" / parsed.location):
            if (folder / "model_index.json").is_file():
                return folder
        return None
    if parsed.kind == "folder":
        return Path(parsed.location)
    if parsed.kind == "file":
        from core.model_info import info_for
        from core.models import config_folder

        fam = info_for(ref).fam
        return config_folder(fam) if fam is not None else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(parsed.location, "model_index.json")
    except Exception:  # a malformed id, an unreadable cache: not on disk
        return None
    return Path(found).parent if isinstance(found, str) else None


@lru_cache(maxsize=32)
def _counter(folder: str):
    """(tokenizer, limit): the CLIP tokenizer with the smallest window of a model folder
    whose text encoders are all CLIP; None when one is not, or when it cannot be read. One
    is loaded: loading takes a good part of a second on a slow machine, with the GIL held
    (so a thread would not spare the window)."""
    import json
    from pathlib import Path

    root = Path(folder)
    try:
        index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    windows = []
    for attr in TOKENIZERS:
        entry = index.get(attr) if isinstance(index, dict) else None
        if not isinstance(entry, list) or len(entry) != 2 or entry[1] is None:
            continue
        if "CLIP" not in str(entry[1]):
            return None  # a T5 or LLM encoder reads what CLIP cuts: no notice
        config = _config(root / attr)
        limit = config.get("model_max_length") if config is not None else None
        if not isinstance(limit, int) or not 0 < limit < _NO_LIMIT:
            return None
        windows.append((limit, attr))
    if not windows:
        return None
    limit, attr = min(windows)
    tokenizer = _read_clip(root / attr)
    return (tokenizer, limit) if tokenizer is not None else None


def _config(folder) -> dict | None:
    import json

    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


# Tokenizers read, by the digest of their files: SDXL's base and refiner (and a model in
# the Hub cache and a copy of it) share CLIP's vocabulary, which is then loaded once.
_read: dict[str, object] = {}


def _read_clip(folder):
    """A CLIP tokenizer from its folder (tokenizer.json, or vocab.json and merges.txt built
    as transformers' CLIPTokenizer builds them); None when the files are not there or
    cannot be read."""
    import hashlib

    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    config = _config(folder) or {}
    bos, eos = str(config.get("bos_token") or BOS), str(config.get("eos_token") or EOS)
    whole = (folder / "tokenizer.json").is_file()
    files = [folder / "tokenizer.json"] if whole else [folder / "vocab.json", folder / "merges.txt"]
    try:
        digest = hashlib.sha256(b"".join(f.read_bytes() for f in files) + f"{bos}{eos}".encode()).hexdigest()
        if digest in _read:
            return _read[digest]
        if whole:
            tokenizer = Tokenizer.from_file(str(files[0]))
        else:
            tokenizer = Tokenizer(BPE.from_file(str(files[0]), str(files[1]), continuing_subword_prefix="",
                                                end_of_word_suffix="</w>", fuse_unk=False,
                                                unk_token=str(config.get("unk_token") or EOS)))
    except Exception:  # missing or damaged files: no count, and the run says what it says
        return None
    if not whole:
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|"""
                                       r"""[\p{N}]|[^\s\p{L}\p{N}]+"""), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ])
        if tokenizer.token_to_id(bos) is None or tokenizer.token_to_id(eos) is None:
            return None
        tokenizer.post_processor = processors.RobertaProcessing((eos, tokenizer.token_to_id(eos)),
                                                               (bos, tokenizer.token_to_id(bos)), False, False)
    _read[digest] = tokenizer
    return tokenizer
