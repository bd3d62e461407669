"""The one rule for boolean variables (k8s_otel._env): true is on, anything else off, bad values warned once."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k8s_otel._env import env_flag, parse_flag


@given(st.text(max_size=12))
def test_parse_flag_accepts_only_true_and_false_in_any_case(text: str) -> None:
    expected = {"true": True, "false": False}.get(text.strip().lower())
    assert parse_flag(text) is expected


@pytest.mark.parametrize(("value", "on"), [("true", True), (" TRUE ", True), ("false", False), ("", False)])
def test_a_good_value_decides_without_a_warning(
    value: str, on: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="k8s_otel"):
        assert env_flag("K8S_OTEL_X", "x stays off", {"K8S_OTEL_X": value}) is on
    assert caplog.records == []


def test_a_bad_value_is_off_and_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="k8s_otel"):
        for _ in range(3):
            assert env_flag("K8S_OTEL_X", "x stays off", {"K8S_OTEL_X": "yes"}) is False
        assert env_flag("K8S_OTEL_X", "x stays off", {"K8S_OTEL_X": "1"}) is False
    warned = [r for r in caplog.records if "K8S_OTEL_X" in r.getMessage()]
    assert [r.levelno for r in warned] == [logging.WARNING, logging.WARNING]  # once per value
    assert "'yes'" in warned[0].getMessage() and "'1'" in warned[1].getMessage()


@pytest.mark.parametrize(
    "name",
    [
        "K8S_OTEL_SAMPLE_LINKED",
        "K8S_OTEL_KUBERNETES_INJECT_OBJECT_CONTEXT",
        "K8S_OTEL_RECORD_EXCEPTION_MESSAGES",
    ],
)
def test_every_adapter_variable_follows_the_rule(
    name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from k8s_otel._errors import record_messages_from_env
    from k8s_otel._sampling import sample_linked_from_env
    from k8s_otel.instrumentation._kubernetes import _inject_object_context_from_env

    read = {
        "K8S_OTEL_SAMPLE_LINKED": sample_linked_from_env,
        "K8S_OTEL_KUBERNETES_INJECT_OBJECT_CONTEXT": _inject_object_context_from_env,
        "K8S_OTEL_RECORD_EXCEPTION_MESSAGES": record_messages_from_env,
    }[name]
    monkeypatch.setenv(name, "True")
    assert read() is True
    monkeypatch.setenv(name, "perhaps")
    with caplog.at_level(logging.DEBUG, logger="k8s_otel"):
        assert read() is False
        assert read() is False
    assert len([r for r in caplog.records if name in r.getMessage()]) == 1
