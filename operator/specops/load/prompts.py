"""Prompts for a run: from a JSONL file's ``prompt`` column, or synthetic ones.

Synthetic prompts are built from common one-token English words, so a prompt
of N words is about N tokens with any Llama-family tokenizer; each starts
with a distinct number so a real vLLM's prefix cache cannot make later
requests artificially cheap.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

_VOCABULARY = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there one all we can their has been if more "
    "when will would who so no time out up"
)
_WORDS = tuple(_VOCABULARY.split())


class PromptError(ValueError):
    """The prompt file is missing, unreadable or has no usable ``prompt`` values."""


def synthetic(count: int, tokens: int, seed: int) -> list[str]:
    """``count`` distinct prompts of about ``tokens`` tokens each."""
    if tokens < 1:
        raise PromptError("prompt length must be at least one token")
    rng = random.Random(seed)
    return [
        " ".join([str(i)] + [rng.choice(_WORDS) for _ in range(tokens - 1)]) for i in range(count)
    ]


def from_jsonl(path: Path) -> list[str]:
    """Every non-empty ``prompt`` string in a JSON-lines file, in order."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PromptError(f"cannot read prompts from {path}: {exc.strerror}") from exc
    prompts: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        prompt = row.get("prompt") if isinstance(row, dict) else None
        if not isinstance(prompt, str) or not prompt:
            raise PromptError(f"{path}:{number}: no string 'prompt' field")
        prompts.append(prompt)
    if not prompts:
        raise PromptError(f"{path}: no prompts")
    return prompts
