"""What a local cluster needs to converge: pure decision logic on plain data.

``decide`` compares a record's desired state and phase with which of its
processes are alive and names the one action to take. The registry carries
the action out under the cluster's lease; this module does no I/O, so the
whole table is tested on plain values.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from pilothouse.vocabulary import ClusterPhase, DesiredState


class Action(StrEnum):
    NONE = "none"
    START = "start"  # start what is not running and wait for readiness (idempotent)
    STOP = "stop"
    DELETE = "delete"  # finish a delete that was interrupted


def decide(desired: str, phase: str, processes: Mapping[str, bool]) -> Action:
    """The action that brings a local cluster from ``phase``/``processes`` to ``desired``.

    A Failed cluster is left for a person to look at (``pilothouse cluster start``
    retries it): restarting it in a loop would hide the failure and burn the machine.
    """
    if phase == ClusterPhase.DELETING:
        return Action.DELETE
    if desired == DesiredState.STOPPED:
        return Action.STOP if any(processes.values()) or phase != ClusterPhase.STOPPED else Action.NONE
    if phase == ClusterPhase.FAILED:
        return Action.NONE
    if phase == ClusterPhase.RUNNING and processes and all(processes.values()):
        return Action.NONE
    return Action.START
