"""Publish a delegate (or watcher) version for in-container upgrades.

Builds the artifact from this checkout (a zipapp of the `delegate/` package with the shared
`protocol/` beside it, or of `watcher/`, with the version stamped into its `__init__.py`, run by the
image's Python on the image's installed dependencies), copies it to
`<data dir>/storage/<kind>/<version>/<kind>.pyz`, and writes the check file (`delegateprod.txt` /
`watcherprod.txt`: `<version> <relative path> <sha256>`). The manager serves `<data dir>/storage/`
at `/storage/`, so a watcher with DELEGATE_STORAGE_URL=<manager>/storage picks the version up at its
next check.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import tempfile
import zipapp
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KINDS = ("delegate", "watcher")
CHECK_FILES = {"delegate": "delegateprod.txt", "watcher": "watcherprod.txt"}
#: packages a kind's zipapp carries beside its own (the delegate speaks the shared protocol)
BUNDLED = {"delegate": ("protocol",), "watcher": ()}
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_STAMP = re.compile(r'^__version__\s*=\s*"[^"]*"', re.MULTILINE)
_MAIN = "import sys\n\nfrom {kind}.cli import main\n\nsys.exit(main())\n"


class PublishError(Exception):
    pass


def build(kind: str, version: str, out: Path, source_root: Path = REPO) -> Path:
    """A zipapp of `<source_root>/<kind>/` that runs as `version`."""
    if kind not in KINDS:
        raise PublishError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    if not _VERSION.match(version):
        raise PublishError(f"version {version!r}: use letters, digits and ._+- (e.g. 1.2.0)")
    package = source_root / kind
    if not (package / "__init__.py").is_file():
        raise PublishError(f"{package} is not a Python package; run from a checkout")
    with tempfile.TemporaryDirectory(prefix=f"publish-{kind}-") as tmp:
        staged = Path(tmp) / kind
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(package, staged, ignore=ignore)
        for extra in BUNDLED[kind]:
            shutil.copytree(source_root / extra, Path(tmp) / extra, ignore=ignore)
        init = staged / "__init__.py"
        text = init.read_text(encoding="utf-8")
        if not _STAMP.search(text):
            raise PublishError(f"{kind}/__init__.py has no __version__ line to stamp")
        init.write_text(_STAMP.sub(f'__version__ = "{version}"', text, count=1), encoding="utf-8")
        (Path(tmp) / "__main__.py").write_text(_MAIN.format(kind=kind), encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        zipapp.create_archive(tmp, out, compressed=True)
    return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


def publish_artifact(storage: Path, kind: str, version: str, artifact: Path) -> str:
    """Put `artifact` into `storage` as `version` and point the check file at it; returns the line."""
    if not _VERSION.match(version):
        raise PublishError(f"version {version!r}: use letters, digits and ._+- (e.g. 1.2.0)")
    relative = f"{kind}/{version}/{kind}.pyz"
    dest = storage / relative
    dest.parent.mkdir(parents=True, exist_ok=True)
    if artifact.resolve() != dest.resolve():
        shutil.copyfile(artifact, dest)
    line = f"{version} {relative} {sha256_of(dest)}\n"
    check = storage / CHECK_FILES[kind]
    tmp = check.with_name(f".{check.name}.tmp")
    tmp.write_text(line, encoding="utf-8")
    os.replace(tmp, check)
    return line.strip()


def publish(data_dir: Path, kind: str, version: str, artifact: Path | None = None) -> str:
    storage = data_dir / "storage"
    if artifact is None:
        artifact = build(kind, version, storage / kind / version / f"{kind}.pyz")
    return publish_artifact(storage, kind, version, artifact)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", required=True, dest="publish_version",
                        help="the version to publish, e.g. 1.1.0 (it is stamped into the artifact)")
    parser.add_argument("--data-dir", type=Path, default=Path(".devstack"),
                        help="the manager's data dir; files go to DATA_DIR/storage (default .devstack)")
    parser.add_argument("--kind", choices=KINDS, default="delegate",
                        help="what to publish (default delegate)")
    parser.add_argument("--artifact", type=Path, default=None,
                        help="publish this prebuilt .pyz instead of building one from the checkout")


def run(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    if args.artifact is not None and not args.artifact.is_file():
        print(f"devstack publish: --artifact {args.artifact}: no such file", file=sys.stderr)
        return 2
    try:
        line = publish(data_dir, args.kind, args.publish_version, args.artifact)
    except (PublishError, OSError) as exc:
        print(f"devstack publish: {exc}", file=sys.stderr)
        return 2
    print(f"published {CHECK_FILES[args.kind]}: {line}")
    env = data_dir / "delegate.env"
    if env.exists():
        for raw in env.read_text().splitlines():
            if raw.startswith("MANAGER_HOST_AND_PORT="):
                url = raw.partition("=")[2].strip() + "/storage"
                prefix = "DELEGATE" if args.kind == "delegate" else "WATCHER"
                print(f"{prefix}_STORAGE_URL={url}  {prefix}_CHECK_LOCATION={CHECK_FILES[args.kind]}")
    return 0
