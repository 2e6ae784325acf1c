"""Publish a delegate (or watcher) version for in-container upgrades, signed.

Builds the artifact from this checkout (a zipapp of the `delegate/` package with the shared
`protocol/` beside it, or of `watcher/`, with the version stamped into its `__init__.py`, run by the
image's Python on the image's installed dependencies), copies it to
`<data dir>/storage/<kind>/<version>/<kind>.pyz`, signs it (`<kind>.pyz.sig`, the format in
watcher/trust.py) and writes the check file (`delegateprod.txt` / `watcherprod.txt`:
`<version> <relative path> <sha256>`). The manager serves `<data dir>/storage/` at `/storage/`, so a
watcher with DELEGATE_STORAGE_URL=<manager>/storage picks the version up at its next check.

Without `--key`, it signs with a development key made on first use in `<data dir>/signing/`
(0600); a watcher trusts it only when told to (WATCHER_TRUSTED_KEYS, printed after publishing).
Reads no environment; the manager's URL comes from `<data dir>/delegate.env` when it is there.

Examples:
  devstack publish --data-dir data --version 1.2.0
  devstack publish --data-dir data --kind watcher --version 1.2.0 --key release.pem

Exit codes: 0 published (prints the check line and the variables to give the watcher), 2 bad
arguments or publishing failed (the message says which file or key).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import zipapp
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REPO = Path(__file__).resolve().parent.parent
KINDS = ("delegate", "watcher")
CHECK_FILES = {"delegate": "delegateprod.txt", "watcher": "watcherprod.txt"}
#: packages a kind's zipapp carries beside its own (the delegate speaks the shared protocol; the watcher
#: imports only its stdlib-only NO_PROXY matcher, `protocol.noproxy`)
BUNDLED = {"delegate": ("protocol",), "watcher": ("protocol",)}
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
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


DEV_KEY = Path("signing") / "dev-ed25519.pem"
EXPIRES_DAYS = 30


def load_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key in PEM (PKCS#8), e.g. from `openssl genpkey -algorithm ed25519`."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PublishError(f"--key {path}: not a readable unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PublishError(f"--key {path}: not an Ed25519 key (make one with "
                           "`openssl genpkey -algorithm ed25519 -out release.pem`)")
    return key


def dev_key(data_dir: Path) -> Ed25519PrivateKey:
    """The development signing key of this data dir, made (0600) on first use."""
    path = data_dir / DEV_KEY
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    return load_key(path)


def public_key_b64(key: Ed25519PrivateKey) -> str:
    """The public half as WATCHER_TRUSTED_KEYS wants it: base64 of the 32 raw bytes."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def signature(kind: str, version: str, data: bytes, keys: list[Ed25519PrivateKey],
              expires_days: float = EXPIRES_DAYS) -> dict[str, object]:
    """The signed metadata for `data` (the format and canonical form of watcher/trust.py)."""
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_days)
    signed = {"type": "harness-artifact", "kind": kind, "version": version,
              "sha256": hashlib.sha256(data).hexdigest(), "length": len(data),
              "expires": expires.replace(microsecond=0).isoformat().replace("+00:00", "Z")}
    message = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    sigs = []
    for key in keys:
        raw = base64.b64decode(public_key_b64(key))
        sigs.append({"keyid": hashlib.sha256(raw).hexdigest()[:16],
                     "sig": base64.b64encode(key.sign(message)).decode()})
    return {"signed": signed, "signatures": sigs}


def publish_artifact(storage: Path, kind: str, version: str, artifact: Path,
                     keys: list[Ed25519PrivateKey] | None = None,
                     expires_days: float = EXPIRES_DAYS) -> str:
    """Put `artifact` into `storage` as `version`, sign it with `keys` (none: unsigned, for tests of
    the refusal) and point the check file at it; returns the check line."""
    if not _VERSION.match(version):
        raise PublishError(f"version {version!r}: use letters, digits and ._+- (e.g. 1.2.0)")
    relative = f"{kind}/{version}/{kind}.pyz"
    dest = storage / relative
    dest.parent.mkdir(parents=True, exist_ok=True)
    if artifact.resolve() != dest.resolve():
        shutil.copyfile(artifact, dest)
    sig = dest.with_name(dest.name + ".sig")
    sig.unlink(missing_ok=True)
    if keys:
        sig.write_text(json.dumps(signature(kind, version, dest.read_bytes(), keys, expires_days)),
                       encoding="utf-8")
    line = f"{version} {relative} {sha256_of(dest)}\n"
    check = storage / CHECK_FILES[kind]
    tmp = check.with_name(f".{check.name}.tmp")
    tmp.write_text(line, encoding="utf-8")
    os.replace(tmp, check)
    return line.strip()


def publish(data_dir: Path, kind: str, version: str, artifact: Path | None = None,
            keys: list[Ed25519PrivateKey] | None = None, expires_days: float = EXPIRES_DAYS) -> str:
    """Build (or take `artifact`), sign with `keys` (default: the data dir's development key)."""
    storage = data_dir / "storage"
    if artifact is None:
        artifact = build(kind, version, storage / kind / version / f"{kind}.pyz")
    if keys is None:
        keys = [dev_key(data_dir)]
    return publish_artifact(storage, kind, version, artifact, keys, expires_days)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", required=True, dest="publish_version",
                        help="the version to publish, e.g. 1.1.0 (it is stamped into the artifact)")
    parser.add_argument("--data-dir", type=Path, default=Path(".devstack"),
                        help="the manager's data dir; files go to DATA_DIR/storage (default .devstack)")
    parser.add_argument("--kind", choices=KINDS, default="delegate",
                        help="what to publish (default delegate)")
    parser.add_argument("--artifact", type=Path, default=None,
                        help="publish this prebuilt .pyz instead of building one from the checkout")
    parser.add_argument("--key", type=Path, action="append", default=None,
                        help="sign with this Ed25519 PEM private key (repeat to sign with two keys "
                             "while rotating); default: the data dir's development key")
    parser.add_argument("--expires-days", type=float, default=EXPIRES_DAYS,
                        help=f"the signature expires after this many days (default {EXPIRES_DAYS})")


def run(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    if args.artifact is not None and not args.artifact.is_file():
        print(f"devstack publish: --artifact {args.artifact}: no such file", file=sys.stderr)
        return 2
    try:
        keys = [load_key(p) for p in args.key] if args.key else [dev_key(data_dir)]
        line = publish(data_dir, args.kind, args.publish_version, args.artifact, keys,
                       args.expires_days)
    except (PublishError, OSError) as exc:
        print(f"devstack publish: {exc}", file=sys.stderr)
        return 2
    print(f"published {CHECK_FILES[args.kind]}: {line}")
    print("WATCHER_TRUSTED_KEYS=" + ",".join(public_key_b64(k) for k in keys))
    env = data_dir / "delegate.env"
    if env.exists():
        for raw in env.read_text().splitlines():
            if raw.startswith("MANAGER_HOST_AND_PORT="):
                url = raw.partition("=")[2].strip() + "/storage"
                prefix = "DELEGATE" if args.kind == "delegate" else "WATCHER"
                print(f"{prefix}_STORAGE_URL={url}  {prefix}_CHECK_LOCATION={CHECK_FILES[args.kind]}")
    return 0
