"""``spec.vllm.extraArgs`` read the way ``vllm serve`` (vLLM 0.33.0, Python 3.12) reads them.

"May this extra argument set a flag the operator renders?" cannot be answered by
comparing spellings: vLLM's ``FlexibleArgumentParser`` rewrites the command line
before argparse sees it, and argparse then accepts abbreviations. So this module
replays both, step by step, against vLLM's own option table
(``data/vllm-0.33.0/serve_options.txt``, printed from vLLM's parser), and says
which destination every extra argument ends up setting:

1. ``--model X`` / ``--model=X`` (exact) is moved to the front as the model;
   ``--config FILE`` (exact) inserts arguments from a YAML file we cannot see.
2. Per argument: ``--help=x`` reads as ``--help``; in ``--``-arguments every
   ``_`` before the first ``.`` (and before ``=``) reads as ``-``; ``-O3``,
   ``-O=3``, ``-Ox`` read as ``--optimization-level x``, ``-O 3`` (0-3) too.
3. Any ``-``-argument with a ``.`` before its ``=`` is a dotted key
   (``--speculative-config.num_speculative_tokens 9``): it takes the next
   argument as its value (or the part after ``=``), and all dotted keys of one
   flag become one JSON value appended at the end, as ``<flag> <json>``. That
   replaces whatever the operator rendered for the flag.
4. argparse (3.12.7+, ``allow_abbrev`` on) classifies each resulting argument:
   an exact option string; ``option=value``; an unambiguous prefix of option
   strings (``--tensor-parallel`` -> ``--tensor-parallel-size``; single dash:
   ``-t`` -> ``-tp``, also ``-t=4``, gh-124345); a single-character option
   glued to its value (``-n4``); several prefixes match -> an error; a
   negative number, a token with a space, or one not starting with ``-`` -> a
   positional value; otherwise an unknown option (an error). After ``--``
   everything is positional.

Which values an option takes is not in the table, so a value token is never
judged: only option tokens are, and argparse classifies a token as an option
or a value by its text alone, whatever precedes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

VLLM_VERSION = "0.33.0"
_TABLE = f"data/vllm-{VLLM_VERSION}/serve_options.txt"

#: Destinations extraArgs may not set, with what to use instead: all the renderer
#: writes, ``--config`` (a file the operator cannot see), and the Hub token and API
#: key, which the spec takes only as Secret references so they stay out of pod specs.
MANAGED_DESTS: Mapping[str, str] = {
    "model": "set the model with spec.verifier.model",
    "model_tag": "set the model with spec.verifier.model",
    "revision": "pin the revision with spec.verifier.revision",
    "served_model_name": "use spec.servedModelName",
    "tensor_parallel_size": "use spec.tensorParallelSize",
    "max_model_len": "use spec.maxModelLen",
    "gpu_memory_utilization": "use spec.gpuMemoryUtilization",
    "port": "the operator manages the port (Service, probes and monitors use it)",
    "speculative_config": "use spec.speculator and spec.speculation",
    "config": "the operator cannot see that file; put its arguments in extraArgs",
    "api_key": "use spec.vllm.apiKeySecretRef, which keeps the key out of the pod spec",
    "hf_token": "use spec.hfTokenSecretRef, which keeps the token out of the pod spec",
}

#: argparse 3.12's test for a negative number (a positional value, not an option).
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
_MODEL_OPTION = re.compile(r"^--model(=.+|$)")
_OPTIMIZATION_LEVELS = frozenset({"0", "1", "2", "3"})
_SHOWN_CHARS = 60

Kind = Literal["option", "value", "unknown", "ambiguous", "incomplete", "separator"]


@dataclass(frozen=True)
class OptionTable:
    """``vllm serve``'s option strings and the destination each one sets."""

    actions: Mapping[str, str]
    canonical: Mapping[str, str]
    positionals: tuple[str, ...]


@dataclass(frozen=True)
class Resolved:
    """What one piece of an extra argument is to vLLM's parser.

    ``kind`` is ``option`` (it sets ``dest`` through the option string ``option``),
    ``value`` (a value or positional), ``unknown``/``ambiguous`` (vLLM refuses to
    start; ``candidates`` lists the matches), ``incomplete`` (a dotted key with no
    value: vLLM crashes) or ``separator`` (``--``: all later arguments are positional).
    One extra argument can yield several (``-O3`` is an option and a value).
    """

    index: int
    arg: str
    kind: Kind
    dest: str | None = None
    option: str | None = None
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Token:
    text: str
    sources: tuple[int, ...]


def parse_table(text: str) -> OptionTable:
    """Read ``serve_options.txt``: option strings (or ``(positional)``), a tab, the dest."""
    actions: dict[str, str] = {}
    canonical: dict[str, str] = {}
    positionals: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        strings, dest = line.split("\t")
        if strings == "(positional)":
            positionals.append(dest)
            continue
        for option in strings.split():
            if not option.startswith("-") or option in actions:
                raise ValueError(f"bad option table line: {line!r}")
            actions[option] = dest
        longs = [o for o in strings.split() if o.startswith("--")]
        canonical.setdefault(dest, (longs or strings.split())[0])
    if any(_NEGATIVE_NUMBER.match(o) for o in actions):
        raise ValueError("an option looks like a negative number; argparse would change rules")
    return OptionTable(actions, canonical, tuple(positionals))


@cache
def option_table() -> OptionTable:
    """vLLM 0.33.0's table, from the package data."""
    text = resources.files("specops").joinpath(_TABLE).read_text(encoding="utf-8")
    return parse_table(text)


# ---------------------------------------------------------------- argparse's step


@dataclass(frozen=True)
class Classified:
    """argparse's verdict on one argument string (``_parse_optional``)."""

    kind: Literal["option", "value", "unknown", "ambiguous"]
    option: str | None = None
    candidates: tuple[str, ...] = ()


def _prefix_matches(token: str, actions: Mapping[str, str]) -> list[str]:
    """``_get_option_tuples``: option strings an abbreviated ``token`` may mean."""
    prefix = token.partition("=")[0]
    if token[1] == "-":
        return [option for option in actions if option.startswith(prefix)]
    short = token[:2]
    return [option for option in actions if option == short or option.startswith(prefix)]


def classify(token: str, table: OptionTable | None = None) -> Classified:
    """How argparse (3.12.7+) reads one argument string of the final command line."""
    actions = (table or option_table()).actions
    if not token or token[0] != "-":
        return Classified("value")
    if token in actions:
        return Classified("option", token)
    if len(token) == 1:
        return Classified("value")
    name, sep, _ = token.partition("=")
    if sep and name in actions:
        return Classified("option", name)
    matches = _prefix_matches(token, actions)
    if len(matches) > 1:
        return Classified("ambiguous", candidates=tuple(matches))
    if matches:
        return Classified("option", matches[0])
    if _NEGATIVE_NUMBER.match(token) or " " in token:
        return Classified("value")
    return Classified("unknown")


# ---------------------------------------------------------------- vLLM's step


def _dash_key(arg: str) -> str:
    """``--a_b.c_d`` -> ``--a-b.c_d``: vLLM's ``(?<=--)[^.]*`` substitution."""
    head, dot, tail = arg[2:].partition(".")
    return "--" + head.replace("_", "-") + dot + tail


def _rewrite(arg: str, following: str | None, source: int) -> list[_Token]:
    """vLLM's per-argument rewriting (``--help=``, underscores, ``-O``)."""
    if arg.startswith("--help="):
        return [_Token("--help", (source,))]
    if arg.startswith("--"):
        key, sep, value = arg.partition("=")
        return [_Token(_dash_key(key) + sep + value, (source,))]
    if arg.startswith("-O") and arg != "-O":
        level = arg[3:] if arg[2] == "=" else arg[2:]
        return [_Token("--optimization-level", (source,)), _Token(level, (source,))]
    if arg == "-O" and following in _OPTIMIZATION_LEVELS:
        return [_Token("--optimization-level", (source,))]
    return [_Token(arg, (source,))]


def _dotted_key(text: str) -> tuple[str, bool] | None:
    """The flag of a dotted-key argument and whether its value is inline, else None."""
    if not text.startswith("-") or "." not in text:
        return None
    name, sep, _ = text.partition("=")
    if "." not in name:
        return None
    return name.split(".", 1)[0], bool(sep)


def _vllm_command_line(
    args: Sequence[str],
) -> tuple[list[_Token], list[Resolved]]:
    """The argument list vLLM hands to argparse, and what vLLM itself consumed."""
    consumed: list[Resolved] = []
    remaining = list(range(len(args)))
    model_at = next((i for i, a in enumerate(args) if _MODEL_OPTION.match(a)), None)
    if model_at is not None:
        consumed.append(Resolved(model_at, args[model_at], "option", "model", "--model"))
        remaining.remove(model_at)
        value_at = model_at + 1
        takes_next = args[model_at] == "--model" and value_at < len(args)
        if takes_next and not args[value_at].startswith("-"):
            consumed.append(Resolved(value_at, args[value_at], "value"))
            remaining.remove(value_at)
    for i in range(len(args)):
        if i in remaining and args[i] == "--config":
            consumed.append(Resolved(i, args[i], "option", "config", "--config"))
            remaining.remove(i)
            if i + 1 in remaining:
                consumed.append(Resolved(i + 1, args[i + 1], "value"))
                remaining.remove(i + 1)
    kept = [args[i] for i in remaining]
    processed: list[_Token] = []
    for position, i in enumerate(remaining):
        following = kept[position + 1] if position + 1 < len(kept) else None
        processed += _rewrite(args[i], following, i)
    return processed, consumed


def _merge_dotted(
    processed: list[_Token], args: Sequence[str]
) -> tuple[list[_Token], list[Resolved]]:
    """vLLM's dotted keys: each takes a value and moves, as ``<flag> <json>``, to the end."""
    regular: list[_Token] = []
    keys: dict[str, list[int]] = {}
    extra: list[Resolved] = []
    skip: set[int] = set()
    for i, token in enumerate(processed):
        if i in skip:
            continue
        dotted = _dotted_key(token.text)
        if dotted is None:
            regular.append(token)
            continue
        key, inline = dotted
        if not inline:
            if i + 1 >= len(processed):
                extra += [Resolved(s, args[s], "incomplete") for s in token.sources]
                continue
            skip.add(i + 1)
            extra += [Resolved(s, args[s], "value") for s in processed[i + 1].sources]
        keys.setdefault(key, []).extend(token.sources)
    for key, sources in keys.items():
        regular += [_Token(key, tuple(sources)), _Token("{}", ())]
    return regular, extra


def resolve(args: Sequence[str], table: OptionTable | None = None) -> list[Resolved]:
    """What every extra argument sets once vLLM and argparse have read it, by index."""
    table = table or option_table()
    processed, resolved = _vllm_command_line(args)
    final, dotted = _merge_dotted(processed, args)
    resolved += dotted
    after_separator = False
    for token in final:
        if after_separator:
            resolved += [Resolved(s, args[s], "value") for s in token.sources]
            continue
        if token.text == "--":
            after_separator = True
            resolved += [Resolved(s, args[s], "separator") for s in token.sources]
            continue
        verdict = classify(token.text, table)
        dest = table.actions[verdict.option] if verdict.option else None
        resolved += [
            Resolved(s, args[s], verdict.kind, dest, verdict.option, verdict.candidates)
            for s in token.sources
        ]
    return sorted(resolved, key=lambda r: r.index)


# ---------------------------------------------------------------- the verdict


def _shown(arg: str) -> str:
    """The argument's name part, never its value (which may be a key or token)."""
    name = arg.partition("=")[0]
    if len(name) > _SHOWN_CHARS:
        name = name[:_SHOWN_CHARS] + "..."
    return repr(name)


def _message(r: Resolved, table: OptionTable, managed: Mapping[str, str]) -> str | None:
    where = f"extraArgs[{r.index}] {_shown(r.arg)}"
    if r.kind == "option" and r.dest is not None and r.dest in managed:
        flag = table.canonical.get(r.dest, r.option or r.dest)
        return f"{where} sets vLLM's {flag}: {managed[r.dest]}"
    if r.kind == "option" and r.dest == "help":
        return f"{where} makes vLLM print its help and exit instead of serving"
    if r.kind == "unknown":
        return f"{where} is not a vllm serve option of vLLM {VLLM_VERSION}; vLLM would not start"
    if r.kind == "ambiguous":
        shown = ", ".join(r.candidates[:4]) + (", ..." if len(r.candidates) > 4 else "")
        return f"{where} abbreviates several vLLM options ({shown}); vLLM would not start"
    if r.kind == "incomplete":
        return f"{where} is a dotted key with no value after it; vLLM would not start"
    if r.kind == "separator":
        return f"{where}: after '--' vLLM reads every argument as a positional; serve takes none"
    return None


def managed_violations(
    args: Sequence[str],
    managed: Mapping[str, str] = MANAGED_DESTS,
    *,
    known_version: bool = True,
    table: OptionTable | None = None,
) -> list[str]:
    """Why vLLM would read ``args`` as overriding a managed flag, or not start at all.

    One message per offending argument, naming it, the flag it resolves to and the
    field to use instead. ``known_version=False`` (the image runs a vLLM whose option
    table we do not ship) keeps the managed-flag check but accepts options 0.33.0 does
    not know or cannot tell apart, since a newer vLLM may know them.
    """
    table = table or option_table()
    messages: list[str] = []
    flagged: set[int] = set()
    for r in resolve(args, table):
        if r.index in flagged or (not known_version and r.kind in ("unknown", "ambiguous")):
            continue
        message = _message(r, table, managed)
        if message is not None:
            flagged.add(r.index)
            messages.append(message)
    return messages


# ---------------------------------------------------------------- the CRD's share


def _spellings(option: str, table: OptionTable) -> list[str]:
    """The option's exact string and every abbreviation argparse resolves to it alone."""
    dest = table.actions[option]
    found = []
    for length in range(2, len(option) + 1):
        prefix = option[:length]
        if all(
            (v := classify(p, table)).kind == "option" and table.actions[v.option or ""] == dest
            for p in (prefix, prefix + "=x")
        ):
            found.append(prefix)
    return found


def _prefix_pattern(option: str, shortest: int) -> str:
    """``--tensor-parallel-size`` from 4 chars: ``--te(n(s(...)?)?)?``, ``_`` for ``-``."""

    def char(c: str, position: int) -> str:
        if c == "-" and option.startswith("--") and position >= 2:
            return "[-_]"
        return c if c.isalnum() or c == "-" else re.escape(c)

    head = "".join(char(c, i) for i, c in enumerate(option[:shortest]))
    tail = ""
    for i in range(len(option) - 1, shortest - 1, -1):
        tail = f"({char(option[i], i)}{tail})?"
    return head + tail


def cel_pattern(dests: Iterable[str], table: OptionTable | None = None) -> str:
    """One RE2 pattern matching the common spellings of options setting ``dests``.

    Covered: each option string and its unambiguous abbreviations (``_`` for ``-``
    after ``--``), alone, with ``=value`` or with a ``.key`` (dotted key). Only
    spellings that set one of ``dests`` whatever surrounds them are matched, so the
    pattern never refuses an argument the full check accepts (except as the value
    of a dotted key, e.g. ``--x.y --port``); the full check covers the rest.
    """
    table = table or option_table()
    wanted = set(dests)
    alternatives = []
    for option, dest in table.actions.items():
        if dest not in wanted:
            continue
        lengths = [len(p) for p in _spellings(option, table)]
        if not lengths:
            continue
        if lengths != list(range(lengths[0], len(option) + 1)):
            raise ValueError(f"{option}: abbreviations are not contiguous: {lengths}")
        alternatives.append(_prefix_pattern(option, lengths[0]))
    return "^(" + "|".join(sorted(alternatives)) + ")([=.]|$)"
