"""Which image reference a task spec may send ECS to.

Docker Hub's `harness/delegate` is the real (Java) Harness delegate, not this project's image: a
spec naming it, with or without a registry prefix, would run something else in a task sized for this
one. `latest` (said or implied) names nothing in particular: ECS would run whatever was pushed last,
and two tasks of one revision could run different code. So a reference must name a registry (the
place `scripts/build-image --push` pushed to, e.g. ECR) and a version tag or a digest.
"""

from __future__ import annotations

import re

#: what people should pass, for messages
EXAMPLE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/harness-delegate:1.0.0"
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
_REFERENCE = re.compile(r"^[A-Za-z0-9.\-:\[\]]+(/[a-z0-9._\-]+)+(:[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127})?"
                        r"(@sha256:[0-9a-f]{64})?$")


class ImageError(ValueError):
    """An image reference a spec must not carry; the message says what to pass instead."""


def _hint(what: str) -> str:
    return (f"{what}; push this project's image with `scripts/build-image --push REGISTRY/REPO:TAG` "
            f"and pass that reference, e.g. {EXAMPLE}")


def split(reference: str) -> tuple[str | None, str, str | None, str | None]:
    """(registry or None, repository, tag or None, digest or None) of a Docker reference."""
    name, _, digest = reference.partition("@")
    first, _, rest = name.partition("/")
    registry = first if rest and ("." in first or ":" in first or first == "localhost") else None
    path = rest if registry else name
    repository, _, tag = path.partition(":") if ":" in path.rsplit("/", 1)[-1] else (path, "", "")
    return registry, repository, tag or None, digest or None


def check_image(reference: str) -> str:
    """`reference` stripped, or ImageError naming what is wrong and what to pass."""
    ref = reference.strip()
    if not ref:
        raise ImageError(_hint("image: none given"))
    if not _REFERENCE.match(ref):
        raise ImageError(_hint(f"image {ref[:120]!r}: not a REGISTRY/REPO:TAG reference"
                               if " " not in ref else f"image {ref[:120]!r}: contains a space"))
    registry, repository, tag, digest = split(ref)
    if registry is None or registry in _DOCKER_HUB:
        if repository.removeprefix("library/") == "harness/delegate":
            raise ImageError(_hint(f"image {ref[:120]!r} is Docker Hub's Java Harness delegate, "
                                   "not this project's image"))
        raise ImageError(_hint(f"image {ref[:120]!r}: name the registry it was pushed to"))
    if tag == "latest" or (tag is None and digest is None):
        said = "the tag latest" if tag else "no tag (so latest)"
        raise ImageError(_hint(f"image {ref[:120]!r}: {said} names no particular build; give a "
                               "version tag or a digest"))
    return ref
