"""The ``manifest.json`` written next to each installed version (pure data, JSON in and out).

Owns the record of what an install put on disk: for every binary its sha256,
size, how it was obtained (``download`` or ``source``) and the upstream version
it was pinned to, plus the release's pins. ``cache`` reads and writes it;
``installer`` builds it from a staging directory with :func:`describe_file`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

from pilothouse import errors

Source = Literal["download", "source"]

SCHEMA_VERSION = 1
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BinaryRecord:
    """One installed binary."""

    name: str
    sha256: str
    size: int
    source: Source
    version: str
    origin: str = ""  # a URL for downloads, a Go package path for builds

    def as_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "size": self.size,
            "source": self.source,
            "version": self.version,
            "origin": self.origin,
        }


@dataclass(frozen=True)
class Manifest:
    """Everything installed for one Kubernetes version."""

    kubernetes: str
    source: Source
    installed_at: str
    pins: dict[str, Any]
    binaries: dict[str, BinaryRecord]
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def total_size(self) -> int:
        return sum(record.size for record in self.binaries.values())

    def to_json(self) -> str:
        body = {
            "schema": SCHEMA_VERSION,
            "kubernetes": self.kubernetes,
            "source": self.source,
            "installed_at": self.installed_at,
            "pins": self.pins,
            "binaries": {name: rec.as_dict() for name, rec in sorted(self.binaries.items())},
            "extra": self.extra,
        }
        return json.dumps(body, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, where: Path | str = "manifest.json") -> Manifest:
        """Parse a manifest; a malformed one is a ``BinaryError`` naming the file."""
        try:
            body = json.loads(text)
            if body.get("schema") != SCHEMA_VERSION:
                raise ValueError(f"unknown schema {body.get('schema')!r}")
            binaries = {
                str(name): BinaryRecord(
                    name=str(name),
                    sha256=str(rec["sha256"]),
                    size=int(rec["size"]),
                    source=_source(rec["source"]),
                    version=str(rec["version"]),
                    origin=str(rec.get("origin", "")),
                )
                for name, rec in dict(body["binaries"]).items()
            }
            return cls(
                kubernetes=str(body["kubernetes"]),
                source=_source(body["source"]),
                installed_at=str(body["installed_at"]),
                pins=dict(body["pins"]),
                binaries=binaries,
                extra={str(k): str(v) for k, v in dict(body.get("extra", {})).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise errors.BinaryError(
                f"the binary manifest {where} is unreadable: {exc}",
                hint="remove the version with `pilothouse binaries remove` and install it again",
            ) from exc


def _source(value: object) -> Source:
    if value not in get_args(Source):
        raise ValueError(f"unknown source {value!r}")
    return cast(Source, value)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe_file(path: Path, *, source: Source, version: str, origin: str = "") -> BinaryRecord:
    """A record for a file on disk (reads it once to hash it)."""
    return BinaryRecord(
        name=path.name,
        sha256=sha256_file(path),
        size=path.stat().st_size,
        source=source,
        version=version,
        origin=origin,
    )
