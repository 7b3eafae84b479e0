"""The reconcile decision table, on plain data."""

from __future__ import annotations

import pytest

from pilothouse.fleet.reconciliation import Action, decide

ALL_UP = {"etcd-0": True, "kube-apiserver-0": True}
ONE_DOWN = {"etcd-0": True, "kube-apiserver-0": False}
ALL_DOWN = {"etcd-0": False, "kube-apiserver-0": False}


@pytest.mark.parametrize(
    ("desired", "phase", "processes", "expected"),
    [
        ("running", "Running", ALL_UP, Action.NONE),
        ("running", "Running", ONE_DOWN, Action.START),
        ("running", "Running", ALL_DOWN, Action.START),
        ("running", "Running", {}, Action.START),
        ("running", "Provisioning", ONE_DOWN, Action.START),
        ("running", "Provisioning", ALL_UP, Action.START),
        ("running", "Stopped", ALL_DOWN, Action.START),
        ("running", "Failed", ONE_DOWN, Action.NONE),
        ("stopped", "Stopped", ALL_DOWN, Action.NONE),
        ("stopped", "Stopped", ONE_DOWN, Action.STOP),
        ("stopped", "Running", ALL_UP, Action.STOP),
        ("stopped", "Provisioning", ALL_DOWN, Action.STOP),
        ("running", "Deleting", ALL_UP, Action.DELETE),
        ("stopped", "Deleting", ALL_DOWN, Action.DELETE),
    ],
)
def test_decide(desired: str, phase: str, processes: dict[str, bool], expected: Action) -> None:
    assert decide(desired, phase, processes) is expected
