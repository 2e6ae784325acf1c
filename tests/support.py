"""Test support: the real-process helpers live in `devstack.procs` (the demo and benchmarks use
them too); tests import them from here."""

from devstack.procs import (
    FINAL_STATES,
    REPO,
    Manager,
    Process,
    delegate_env,
    free_port,
    http_get,
    python_env,
    read_env_file,
    start_delegate,
    wait_until,
)

__all__ = [
    "FINAL_STATES", "REPO", "Manager", "Process", "delegate_env", "free_port", "http_get",
    "python_env", "read_env_file", "start_delegate", "wait_until",
]
