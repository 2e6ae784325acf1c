"""Files that hold a secret or a script: private to the delegate's uid, written atomically.

The work dir is 0700 and every file in it that holds a secret or a script (the ECS sequence file,
the profile, spooled results) is 0600, created with that mode rather than chmod-ed after the fact,
so there is no moment at which another uid could open it.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed and make it 0700; OSError if that is impossible."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if (path.stat().st_mode & 0o777) != DIR_MODE:
        path.chmod(DIR_MODE)
    return path


def write_private(path: Path, data: str | bytes, *, sync: bool = False) -> None:
    """Write `data` to `path` atomically (temp file + rename), the file mode 0600 from birth."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an old temp file of another mode is reused by O_CREAT
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
