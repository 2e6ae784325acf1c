"""A real container registry on loopback: Debian's `docker-registry` (the CNCF distribution registry).

    with LocalRegistry(data_dir) as registry:      # registry.address == "127.0.0.1:PORT"
        ...  scripts/build-image --push {registry.address}/harness/delegate:1.0.0

    python -m devstack registry --port 5000 --data-dir DIR   # prints "local registry ready at ADDR"

Plain HTTP on 127.0.0.1 (podman, buildah and skopeo accept that with `--tls-verify=false`; the
local ECS's container runner passes it for loopback registries). No authentication: it only
listens on loopback. `scripts/ensure-packages docker-registry` installs the program.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType, TracebackType

from devstack.procs import REPO, free_port, wait_until

PROGRAM = "docker-registry"
EXIT_OK, EXIT_FAILED_TO_START = 0, 3

_CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {address}
"""


def ensure_installed() -> str:
    """The registry program's path, installed with apt-get when missing (CI starts bare)."""
    if shutil.which(PROGRAM) is None:
        subprocess.run([str(REPO / "scripts" / "ensure-packages"), PROGRAM], check=True, timeout=600)
    path = shutil.which(PROGRAM)
    if path is None:
        raise RuntimeError(f"{PROGRAM} is not installed: apt-get install {PROGRAM}")
    return path


class LocalRegistry:
    """`docker-registry serve` on 127.0.0.1:`port` (0: a free one), storing under `data_dir`."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def _answers(self) -> bool:
        with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2) as resp:
            return bool(resp.status == 200)

    def start(self) -> LocalRegistry:
        program = ensure_installed()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "config.yml"
        config.write_text(_CONFIG.format(root=self.data_dir / "storage", address=self.address))
        log = (self.data_dir / "registry.log").open("ab")
        self._proc = subprocess.Popen([program, "serve", str(config)], stdout=log, stderr=log,
                                      start_new_session=True)
        log.close()
        try:
            wait_until(self._answers, 30, f"the registry answering at {self.address}", every=0.1,
                       tolerate=(OSError, urllib.error.URLError))
        except AssertionError:
            self.stop()
            tail = (self.data_dir / "registry.log").read_text(errors="replace")[-1000:]
            raise RuntimeError(f"{PROGRAM} did not start on {self.address}: {tail}") from None
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks one")
    parser.add_argument("--data-dir", type=Path, required=True, help="where the images are kept")


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        registry = LocalRegistry(args.data_dir, args.port).start()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"devstack registry: {exc}", flush=True)
        return EXIT_FAILED_TO_START
    print(f"local registry ready at {registry.address}", flush=True)
    try:
        while not stop.wait(0.5):
            if registry._proc is None or registry._proc.poll() is not None:
                print("devstack registry: docker-registry exited", flush=True)
                return EXIT_FAILED_TO_START
    finally:
        registry.stop()
    return EXIT_OK
