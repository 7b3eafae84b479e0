#!/usr/bin/env python3
"""Generate ``src/pilothouse/fleet/api_lifecycle.json`` from Kubernetes' own API source.

``k8s.io/api`` declares, for every served type, the release that introduced,
deprecated and removed it and what replaces it, in generated Go files
(``<group>/<version>/zz_generated.prerelease-lifecycle.go``, written by
``prerelease-lifecycle-gen`` from ``+k8s:prerelease-lifecycle-gen`` tags;
the API server itself stops serving a type at its ``APILifecycleRemoved``
release). This script reads those files and each package's ``register.go``
(``GroupName``, ``""`` for core) from the Go module cache and writes one JSON
record per (group, version, kind).

Several module versions may be given, newest first: a type is taken from the
newest module that declares it, and older modules fill in types the newer ones
dropped (k8s.io/api v0.36 no longer ships ``autoscaling/v2beta1`` and
``v2beta2``, removed from serving in 1.25 and 1.26, while v0.35 still does).

    scripts/gen_api_lifecycle.py                      # v0.36.3 + v0.35.4 (the default)
    scripts/gen_api_lifecycle.py v0.36.3 v0.35.4 --check   # exit 1 when the file is stale

Modules are located with ``go mod download -json`` (instant when cached).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

MODULE = "k8s.io/api"
DEFAULT_VERSIONS = ("v0.36.3", "v0.35.4")
OUTPUT = Path(__file__).resolve().parent.parent / "src" / "pilothouse" / "fleet" / "api_lifecycle.json"
LIFECYCLE_FILE = "zz_generated.prerelease-lifecycle.go"

_GROUP_NAME = re.compile(r'^const GroupName = "([^"]*)"', re.MULTILINE)
_SCHEME_VERSION = re.compile(
    r'SchemeGroupVersion = schema\.GroupVersion\{Group: GroupName, Version: "([^"]+)"\}'
)
_RELEASE = re.compile(
    r"^func \(in \*(\w+)\) APILifecycle(Introduced|Deprecated|Removed)\(\) \(major, minor int\) \{\n"
    r"\s*return (\d+), (\d+)\n\}",
    re.MULTILINE,
)
_REPLACEMENT = re.compile(
    r"^func \(in \*(\w+)\) APILifecycleReplacement\(\) schema\.GroupVersionKind \{\n"
    r'\s*return schema\.GroupVersionKind\{Group: "([^"]*)", Version: "([^"]+)", Kind: "(\w+)"\}\n\}',
    re.MULTILINE,
)
_ANY_FUNC = re.compile(r"^func \(in \*\w+\) APILifecycle\w+\(\)", re.MULTILINE)


def module_dir(version: str) -> Path:
    """The module's directory in the Go module cache, downloading it when needed."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{version}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(json.loads(out)["Dir"])


def package_types(package: Path, source: str) -> list[dict[str, Any]]:
    """The lifecycle records of one ``<group>/<version>`` package."""
    register = (package / "register.go").read_text()
    group_match = _GROUP_NAME.search(register)
    version_match = _SCHEME_VERSION.search(register)
    if group_match is None or version_match is None:
        raise SystemExit(f"{package}/register.go: no GroupName or SchemeGroupVersion")
    group, version = group_match[1], version_match[1]
    if version != package.name:
        raise SystemExit(f"{package}: directory says {package.name}, register.go says {version}")
    text = (package / LIFECYCLE_FILE).read_text()
    types: dict[str, dict[str, Any]] = {}

    def record(kind: str) -> dict[str, Any]:
        return types.setdefault(
            kind,
            {
                "group": group,
                "version": version,
                "kind": kind,
                "introduced": None,
                "deprecated": None,
                "removed": None,
                "replacement": None,
                "source": source,
            },
        )

    parsed = 0
    for kind, which, major, minor in _RELEASE.findall(text):
        record(kind)[which.lower()] = f"{int(major)}.{int(minor)}"
        parsed += 1
    for kind, r_group, r_version, r_kind in _REPLACEMENT.findall(text):
        record(kind)["replacement"] = {"group": r_group, "version": r_version, "kind": r_kind}
        parsed += 1
    if parsed != len(_ANY_FUNC.findall(text)):  # the generator's format changed: fail, never skip
        raise SystemExit(
            f"{package}/{LIFECYCLE_FILE}: parsed {parsed} of {len(_ANY_FUNC.findall(text))} functions"
        )
    return list(types.values())


def collect(versions: list[str]) -> list[dict[str, Any]]:
    """Every type of the given module versions; the first (newest) version declaring a type wins."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for version in versions:
        root = module_dir(version)
        for path in sorted(root.glob(f"*/*/{LIFECYCLE_FILE}")):
            for entry in package_types(path.parent, f"{MODULE}@{version}"):
                found.setdefault((entry["group"], entry["version"], entry["kind"]), entry)
    return [found[key] for key in sorted(found)]


def render(versions: list[str], types: list[dict[str, Any]]) -> str:
    """Stable JSON, one type a line, so regenerating shows a readable diff."""
    lines = [
        "{",
        f'  "generated_by": "scripts/gen_api_lifecycle.py {" ".join(versions)}",',
        f'  "modules": {json.dumps([f"{MODULE}@{v}" for v in versions])},',
        '  "types": [',
    ]
    lines += [f"    {json.dumps(t)}{',' if i < len(types) - 1 else ''}" for i, t in enumerate(types)]
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "versions", nargs="*", default=list(DEFAULT_VERSIONS), help="k8s.io/api versions, newest first"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail when the output file is not up to date")
    args = parser.parse_args()
    text = render(args.versions, collect(args.versions))
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(
                f"{args.output} is stale: run scripts/gen_api_lifecycle.py {' '.join(args.versions)}",
                file=sys.stderr,
            )
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {len(json.loads(text)['types'])} types to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
