"""The fault suite's shared parts: one local AWS, one manager, and every row of the fault table
started at once (each row has its own cluster, delegate group and fault proxy, so rows are
independent); each test then waits for its row's outcome and judges it."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from devstack.aws import server
from devstack.aws.server import LocalAws
from devstack.faultcases import MANAGER_ARGS, Case, Outcome
from devstack.faultrows import ROWS
from tests.support import Manager


@pytest.fixture(scope="module")
def fault_aws() -> Iterator[LocalAws]:
    with server.running_or_new() as aws:
        yield aws


@pytest.fixture(scope="module")
def outcomes(fault_aws: LocalAws,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Outcome]]]:
    work = tmp_path_factory.mktemp("faults")
    with Manager(work / "manager", *MANAGER_ARGS) as manager:
        cases: list[Case] = []

        def run(name: str) -> Outcome:
            case = Case(name, fault_aws, manager, work, breaker=ROWS[name].breaker)
            cases.append(case)
            return ROWS[name].run(case)

        with ThreadPoolExecutor(max_workers=len(ROWS), thread_name_prefix="fault-row") as pool:
            yield {name: pool.submit(run, name) for name in ROWS}
            for case in cases:
                case.close()
