"""Which container images a cluster admin allows ``spec.vllm.image`` to name (pure).

Why a check in the operator at all: whoever writes a SpeculativeDeployment
chooses the image its pods run, and an admin may want only mirrored, scanned
images to run next to the GPUs. Why parse instead of comparing strings:
``vllm/vllm-openai`` and ``docker.io/vllm/vllm-openai`` name the same image,
and a plain prefix test would let ``registry.example.com.evil.io/x`` through
an entry for ``registry.example.com``. So both the image and every allowed
entry are read as references the way container runtimes read them (Docker
Hub's defaults filled in) and compared part by part.

Entries (the ``allowedImages`` setting), from widest to narrowest:

- ``registry.example.com`` or ``registry.example.com/`` (also ``host:5000``,
  ``localhost``): any image from that registry;
- ``registry.example.com/vllm/``: any repository under that path (a path
  prefix ends at a ``/``);
- ``vllm/vllm-openai``: any tag or digest of that repository;
- ``vllm/vllm-openai:v0.33.0``: that tag only, and without a digest (a
  runtime pulls ``name:tag@digest`` by the digest and ignores the tag);
- ``vllm/vllm-openai@sha256:<hex>``: that digest; ``...@sha256:`` with no
  hex: any digest of that repository (images pinned by digest only).

An image that is not a valid reference is refused whenever a list is set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
#: Names Docker Hub also answers to; they normalise to ``docker.io``.
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_OFFICIAL = "library/"

# The grammar of github.com/distribution/reference (reference/regexp.go), without IPv6 hosts.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"^{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_ALGORITHM = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*$")
_HEX = re.compile(r"^[0-9a-fA-F]{32,}$")
_MAX_LENGTH = 512


class ImageReferenceError(ValueError):
    """A string that is not an image reference (or not an allowlist entry)."""


@dataclass(frozen=True)
class ImageRef:
    """An image reference with Docker's defaults filled in."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        text = f"{self.domain}/{self.path}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def _looks_like_domain(component: str) -> bool:
    """Docker's rule for the first ``/``-separated component of a name."""
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component != (component.lower())
    )


def _domain(text: str) -> str:
    if not _DOMAIN.match(text):
        raise ImageReferenceError(f"{text!r} is not a registry host")
    host = text.lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def _path(domain: str, text: str, *, prefix: bool = False) -> str:
    """Repository path; Docker Hub's one-component names live under ``library/``."""
    parts = text.split("/")
    body = parts[:-1] if prefix else parts
    if not body or not all(_PATH_COMPONENT.match(part) for part in body):
        raise ImageReferenceError(f"{text!r} is not a repository path")
    if domain == DOCKER_HUB and len(parts) == 1:
        return _OFFICIAL + text
    return text


def _split_name(name: str) -> tuple[str, str]:
    """(domain, rest) of a name without tag or digest."""
    first, slash, rest = name.partition("/")
    if slash and _looks_like_domain(first):
        return _domain(first), rest
    return DOCKER_HUB, name


def _digest(text: str, *, allow_empty: bool = False) -> str:
    algorithm, colon, hex_part = text.partition(":")
    if not colon or not _ALGORITHM.match(algorithm):
        raise ImageReferenceError(f"{text!r} is not a digest (algorithm:hex)")
    if not (_HEX.match(hex_part) or (allow_empty and not hex_part)):
        raise ImageReferenceError(f"{text!r} is not a digest (algorithm:hex)")
    return f"{algorithm}:{hex_part.lower()}"


def _name_and_tag(text: str) -> tuple[str, str | None]:
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        tag = text[colon + 1 :]
        if not _TAG.match(tag):
            raise ImageReferenceError(f"{tag!r} is not an image tag")
        return text[:colon], tag
    return text, None


def parse_image(text: str) -> ImageRef:
    """The normalised reference of ``text``; :class:`ImageReferenceError` if it is not one.

    An image with neither tag nor digest is ``:latest``, as a runtime pulls it.
    """
    if not text or len(text) > _MAX_LENGTH or text != text.strip():
        raise ImageReferenceError("not an image reference")
    rest, at, digest_text = text.partition("@")
    digest = _digest(digest_text) if at else None
    name, tag = _name_and_tag(rest)
    domain, path_text = _split_name(name)
    path = _path(domain, path_text)
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(domain, path, tag, digest)


@dataclass(frozen=True)
class ImageRule:
    """One allowlist entry, parsed.

    ``path`` is ``""`` for a whole registry, ends with ``/`` for a path prefix,
    else names one repository (then ``tag`` or ``digest`` may narrow it).
    """

    text: str
    domain: str
    path: str = ""
    tag: str | None = None
    digest: str | None = None

    def allows(self, image: ImageRef) -> bool:
        """Whether ``image`` is one this entry admits."""
        if image.domain != self.domain:
            return False
        if self.path == "" or self.path.endswith("/"):
            return image.path.startswith(self.path)
        if image.path != self.path:
            return False
        if self.digest is not None:
            if image.digest is None:
                return False
            return image.digest == self.digest or (
                self.digest.endswith(":") and image.digest.startswith(self.digest)
            )
        if self.tag is not None:
            return image.digest is None and image.tag == self.tag
        return True


def _registry_only(text: str) -> bool:
    """An entry without ``/`` naming a registry (``host.tld``, ``host:5000``, ``localhost``)."""
    host, colon, port = text.partition(":")
    if colon and not port.isdigit():
        return False  # ``name:tag``
    return "." in host or host == "localhost"


def parse_rule(entry: str) -> ImageRule:
    """One ``allowedImages`` entry; :class:`ImageReferenceError` names what is wrong."""
    text = entry.strip()
    if not text or len(text) > _MAX_LENGTH:
        raise ImageReferenceError(f"allowed image entry {entry!r} is empty or too long")
    try:
        if text.endswith("/") or ("/" not in text and _registry_only(text)):
            return _prefix_rule(text)
        rest, at, digest_text = text.partition("@")
        digest = _digest(digest_text, allow_empty=True) if at else None
        name, tag = _name_and_tag(rest)
        if tag is not None and digest is not None:
            raise ImageReferenceError("give a tag or a digest, not both")
        domain, path_text = _split_name(name)
        return ImageRule(text, domain, _path(domain, path_text), tag, digest)
    except ImageReferenceError as exc:
        raise ImageReferenceError(f"allowed image entry {entry!r}: {exc}") from None


def _prefix_rule(text: str) -> ImageRule:
    body = text.rstrip("/")
    first, slash, rest = body.partition("/")
    if not slash:
        if _looks_like_domain(first):
            return ImageRule(text, _domain(first))
        return ImageRule(text, DOCKER_HUB, _path(DOCKER_HUB, first + "/", prefix=True))
    if _looks_like_domain(first):
        return ImageRule(text, _domain(first), _path("", rest + "/", prefix=True))
    return ImageRule(text, DOCKER_HUB, _path("", body + "/", prefix=True))


def parse_rules(entries: Iterable[str]) -> tuple[ImageRule, ...]:
    """Every entry parsed (settings validation calls this once at start-up)."""
    return tuple(parse_rule(entry) for entry in entries)


def image_allowed(image: str, rules: Iterable[ImageRule]) -> bool:
    """Whether ``image`` may run: no rules allow anything; else one rule must admit it."""
    rules = tuple(rules)
    if not rules:
        return True
    try:
        ref = parse_image(image)
    except ImageReferenceError:
        return False
    return any(rule.allows(ref) for rule in rules)


def refusal(image: str, rules: Iterable[ImageRule]) -> str | None:
    """The message for a refused ``spec.vllm.image``, or ``None`` when it is allowed."""
    rules = tuple(rules)
    if image_allowed(image, rules):
        return None
    allowed = ", ".join(rule.text for rule in rules)
    return (
        f"spec.vllm.image {image!r} is not an image this cluster allows; change spec.vllm.image "
        f"to one matching the operator's allowedImages setting: {allowed}"
    )
