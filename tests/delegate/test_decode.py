"""Junk in, clear errors out: property-based tests of everything that decodes what the manager sends."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from delegate import guards
from delegate.errors import ProtocolViolation, TaskError
from delegate.tasks import registry
from delegate.tasks.package import decode
from protocol import wire

registry.load_builtin_types()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=20,
)
task_types = st.sampled_from([*registry.names(), "", "NOPE", "shell_script"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(task_type=task_types, data=st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_decode_names_the_problem_or_returns_valid_input(task_type: str,
                                                         data: dict[str, Any]) -> None:
    package = wire.DelegateTaskPackage(delegate_task_id="t", account_id="a", task_type=task_type,
                                       data=data)
    try:
        kind, value = decode(package)
    except TaskError as exc:
        message = str(exc)
        assert message
        assert task_type[:100] in message or "invalid data" in message or "limit" in message
        return
    assert kind.name == task_type
    assert isinstance(value, kind.input_model)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=20), json_values, max_size=8))
def test_task_package_model_only_raises_validation_errors(raw: dict[str, Any]) -> None:
    with contextlib.suppress(ValidationError):
        wire.DelegateTaskPackage.model_validate(raw)


@settings(max_examples=300, deadline=None)
@given(status=st.sampled_from([200, 201, 400, 404, 409, 500]),
       body=st.one_of(st.text(max_size=40), json_values.map(json.dumps)))
def test_envelope_decoder_raises_protocol_violation_or_decodes(status: int, body: str) -> None:
    try:
        envelope = guards.decode_envelope("GET x", status, body.encode())
    except ProtocolViolation as exc:
        assert "GET x" in str(exc)
        return
    if envelope is not None and status < 300:
        try:
            guards.resource("acquire", envelope, wire.DelegateTaskPackage)
        except ProtocolViolation as exc:
            assert "acquire" in str(exc)


def test_oversized_data_is_refused_by_size() -> None:
    package = wire.DelegateTaskPackage(
        delegate_task_id="t", account_id="a", task_type="SHELL_SCRIPT",
        data={"script": "x" * (wire.MAX_TASK_DATA_BYTES + 10)})
    with pytest.raises(TaskError, match="limit"):
        decode(package)


@settings(max_examples=50, deadline=None)
@given(depth=st.integers(min_value=201, max_value=200_000), opener=st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_a_protocol_violation_not_a_recursion_error(depth: int,
                                                                     opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    body = opener * depth + "1" + closer * depth
    with pytest.raises(ProtocolViolation, match="GET x"):
        guards.decode_envelope("GET x", 200, body.encode())


def test_ids_in_urls_are_checked_and_encoded() -> None:
    assert guards.task_part("AbC-1_2.3") == "AbC-1_2.3"
    for bad in ["../../x", "q?x=1#f", "a\x00b", "a/b", "a b", "naïve", "x" * 129, ".", ""]:
        with pytest.raises(ProtocolViolation, match="not a valid id"):
            guards.task_part(bad)
