"""Validated requests for the cluster registry, shared by the CLI and the REST API.

pydantic checks the shape; ``parse`` turns its errors into one
``InvalidInput`` naming each bad field and what is allowed.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pilothouse import errors
from pilothouse.binaries import catalog

NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
MAX_NODES = 5000


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=40, pattern=NAME_PATTERN)


class CreateLocalCluster(_Request):
    """Create a cluster of real control-plane processes on this machine."""

    nodes: int = Field(default=3, ge=0, le=MAX_NODES)
    control_planes: Literal[1, 3] = 1
    version: str | None = None
    api_port: int | None = Field(default=None, ge=1024, le=65535)

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return catalog.pins_for(value).kubernetes
        except errors.PilothouseError as exc:
            raise ValueError(f"{exc.message}; {exc.hint}") from None


class ImportCluster(_Request):
    """Register an existing cluster from a kubeconfig (its text, not a path)."""

    kubeconfig: str = Field(min_length=1, max_length=1_000_000)
    context: str | None = None


Model = TypeVar("Model", bound=BaseModel)


_FIELD_HINTS = {
    "name": "cluster names are lowercase letters, digits and '-', starting with a letter (max 40)",
    "nodes": f"nodes is a number from 0 to {MAX_NODES}",
    "control_planes": "control planes are 1, or 3 for HA",
    "version": f"supported Kubernetes versions: {', '.join(catalog.supported_versions())}",
    "api_port": "the API port is a number from 1024 to 65535",
    "kubeconfig": "pass the text of a kubeconfig file",
}


def parse(model: type[Model], **data: Any) -> Model:
    try:
        return model(**data)
    except ValidationError as exc:
        fields = [str(e["loc"][0]) if e["loc"] else "" for e in exc.errors()]
        hints = dict.fromkeys(_FIELD_HINTS.get(f, "fix or remove the fields named above") for f in fields)
        raise errors.InvalidInput(
            "; ".join(_describe(e) for e in exc.errors()), hint="; ".join(hints)
        ) from None


def _describe(error: Any) -> str:
    field = ".".join(str(p) for p in error["loc"]) or "request"
    message = str(error["msg"])
    if error["type"] == "string_pattern_mismatch":
        message = "must be lowercase letters, digits and '-', starting with a letter"
    return (
        f"{field}: {message} (got {error.get('input')!r})" if field != "kubeconfig" else f"{field}: {message}"
    )
