"""Translation of transport failures into Pilothouse errors (plain exception values)."""

from __future__ import annotations

import httpx2
import pytest

from pilothouse import errors
from pilothouse.kube.client import translate
from pilothouse.kube.credentials import ClusterCredentials

CREDS = ClusterCredentials(server="https://127.0.0.1:6443", context="c", token="t0ken-secret")


@pytest.mark.parametrize(
    ("raised", "expected", "fragment"),
    [
        (httpx2.ConnectError("[Errno 111] Connection refused"), errors.ClusterUnreachable, "cannot connect"),
        (
            httpx2.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
            errors.ClusterUnreachable,
            "not signed by the kubeconfig's CA",
        ),
        (httpx2.ReadTimeout("timed out"), errors.ClusterUnreachable, "did not answer in time"),
        (
            ExceptionGroup("creates", [httpx2.ConnectError("refused"), httpx2.ReadTimeout("t")]),
            errors.ClusterUnreachable,
            "cannot connect",
        ),
    ],
)
def test_transport_failures_become_actionable_errors(
    raised: BaseException, expected: type[errors.PilothouseError], fragment: str
) -> None:
    translated = translate(raised, CREDS)
    assert type(translated) is expected
    assert fragment in translated.message
    assert CREDS.server in translated.message
    assert "t0ken-secret" not in str(translated.to_dict())
    assert translated.hint


def test_unknown_exceptions_are_not_swallowed() -> None:
    with pytest.raises(ZeroDivisionError):
        translate(ZeroDivisionError("bug"), CREDS)
