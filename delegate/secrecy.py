"""Keeping the delegate's secrets inside its own process.

Task scripts run as the delegate's uid. Without more, a script could read the delegate's
`/proc/<pid>/environ` (the token, AWS keys) or its memory. `make_non_dumpable` sets
`PR_SET_DUMPABLE` to 0: the kernel then gives `/proc/<pid>/` to root and refuses ptrace and
`/proc/<pid>/environ` and `mem` to every other uid, including the delegate's own. Children are
not affected (exec resets the flag), so scripts run as before; they just cannot look back.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def make_non_dumpable() -> bool:
    """True if the flag is now off (Linux); False where prctl is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), "prctl")
    return int(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)) == 0


#: besides the delegate's own settings, values the scrubber must never let through
ENV_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
