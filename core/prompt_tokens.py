"""Prompts longer than a text encoder reads: counted with the stage's own tokenizers when
it runs, so the user learns which words were cut instead of wondering why they do nothing."""
from __future__ import annotations

import inspect

TOKENIZERS = ("tokenizer", "tokenizer_2", "tokenizer_3")
_NO_LIMIT = 100_000  # tokenizers without a limit of their own say so with a huge model_max_length


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
