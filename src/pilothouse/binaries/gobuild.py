"""``--from-source``: build the binaries with the Go toolchain from small wrapper modules.

Owns the wrapper modules (rendered by pure functions, so tests can check the exact
go.mod text) and running ``go`` on them. The Go toolchain does the heavy lifting:
the module proxy and ``GOMODCACHE`` supply sources, ``GOCACHE`` keeps compiled
packages, so a second build (or a re-run after a crash) recompiles nothing.

Hard-won facts (the recipe was first proven by hand; ``render_*`` reproduce it):

- ``go install k8s.io/kubernetes/cmd/...@vX`` is refused because the release's
  go.mod points its staging modules at ``./staging``. The wrapper module
  ``pilothouse.local/k8s-binaries`` requires ``k8s.io/kubernetes vX`` and
  ``sigs.k8s.io/kwok vY`` and replaces every staging module named in the
  release's own go.mod (read from ``go mod download -json``) with the published
  ``v0.<minor>.<patch>``. The release's ``go`` and ``godebug`` lines are copied:
  Go ignores a dependency's ``godebug``, so without it the binaries change behaviour.
- One ``go build`` for all five commands compiles shared packages once (~2 GiB
  RSS per compile, tens of minutes cold on 2 cores).
- Without ``-X …/version.gitVersion`` (under both component-base and client-go)
  the binaries report ``v0.0.0``. The build date is fixed so builds are reproducible.
- etcd has its own wrapper (``pilothouse.local/etcd-binaries``): its module uses
  relative replaces too, and ``go.etcd.io/etcd/server/v3`` is package main. The
  same wrapper requires ``go.etcd.io/etcd/etcdctl/v3`` and ``…/etcdutl/v3`` at the
  same version (snapshots and restores for ``fleet.backups``); each of the three is
  built with its own ``-o`` file, because all three import paths end in ``/v3``.
  :meth:`GoBuilder.build_etcd` builds only these, so an install that lacks the
  tools gets them without relinking the Kubernetes binaries.
- A kwok tag compiles only against the k8s.io minor it targets
  (``ReleasePins.kwok_kubernetes``). When that is the release's minor (1.36.3 with
  kwok v0.8.0) kwok and kwokctl build in the Kubernetes wrapper, sharing its
  compiled packages; otherwise (1.35.4) the Kubernetes wrapper builds only the
  control plane, and kwok gets its own wrapper (``pilothouse.local/kwok-binaries``)
  whose ``go`` line is kwok's own and whose k8s.io versions are kwok's own (no
  staging replaces), built with ``-s -w`` like kwok's release builds.
  :func:`kwok_in_kubernetes_module` makes the choice.

Layout under the cache's ``gobuild`` directory (kept between runs; that is what
makes a re-run after a crash resume rather than restart)::

    k8s-v1.36.3/{go.mod,go.sum,tools.go,build.log,inputs.json,bin/}
    k8s-v1.35.4/…                   control plane only
    kwok-v0.8.0/…                   only for releases whose minor kwok does not target
    etcd-v3.6.16/…                  etcd, etcdctl, etcdutl; shared by releases pinning the same etcd
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pilothouse import errors
from pilothouse.binaries import catalog
from pilothouse.vocabulary import Component

#: ``(phase, detail)``; detail is the latest line of Go's output, or "".
PhaseCallback = Callable[[str, str], None]

PHASE_RESOLVING = "resolving modules"
PHASE_KUBERNETES = "compiling kubernetes"
PHASE_KWOK = "compiling kwok"  # only when kwok has its own wrapper module
PHASE_ETCD = "compiling etcd"
PHASE_VERIFYING = "verifying"
PHASES = (PHASE_RESOLVING, PHASE_KUBERNETES, PHASE_KWOK, PHASE_ETCD, PHASE_VERIFYING)

K8S_WRAPPER_MODULE = "pilothouse.local/k8s-binaries"
KWOK_WRAPPER_MODULE = "pilothouse.local/kwok-binaries"
ETCD_WRAPPER_MODULE = "pilothouse.local/etcd-binaries"
KUBERNETES_MODULE = "k8s.io/kubernetes"
KWOK_MODULE = "sigs.k8s.io/kwok"
ETCD_MODULE = "go.etcd.io/etcd/server/v3"
ETCDCTL_MODULE = "go.etcd.io/etcd/etcdctl/v3"
ETCDUTL_MODULE = "go.etcd.io/etcd/etcdutl/v3"
BUILD_TAGS = "selinux,notest"
BUILD_DATE = "2026-01-01T00:00:00Z"

#: Binary name → Go package, in build order.
CONTROL_PLANE_PACKAGES: dict[str, str] = {
    str(Component.KUBE_APISERVER): "k8s.io/kubernetes/cmd/kube-apiserver",
    str(Component.KUBE_CONTROLLER_MANAGER): "k8s.io/kubernetes/cmd/kube-controller-manager",
    str(Component.KUBE_SCHEDULER): "k8s.io/kubernetes/cmd/kube-scheduler",
}
KWOK_PACKAGES: dict[str, str] = {
    str(Component.KWOK): "sigs.k8s.io/kwok/cmd/kwok",
    catalog.KWOKCTL: "sigs.k8s.io/kwok/cmd/kwokctl",
}
#: What the Kubernetes wrapper builds when kwok shares it.
KUBERNETES_PACKAGES: dict[str, str] = {**CONTROL_PLANE_PACKAGES, **KWOK_PACKAGES}
ETCD_PACKAGE = ETCD_MODULE
#: Binary name → Go package (each package is its module's root) of the etcd wrapper, in build order.
ETCD_PACKAGES: dict[str, str] = {
    str(Component.ETCD): ETCD_MODULE,
    str(Component.ETCDCTL): ETCDCTL_MODULE,
    str(Component.ETCDUTL): ETCDUTL_MODULE,
}

_TAIL_LINES = 20
_STAGING_TARGET = re.compile(r"^\./staging/")


# --- pure: go.mod parsing and rendering -------------------------------------------------------


@dataclass(frozen=True)
class ReleaseGoMod:
    """What the wrapper copies from a release's own go.mod."""

    go_directive: str
    godebug: str  # comma-separated ``key=value`` entries (GODEBUG syntax); "" when absent
    staging_modules: tuple[str, ...]


def _directives(text: str) -> list[tuple[str, str]]:
    """``(verb, rest)`` for every directive line, with blocks expanded and comments dropped."""
    out: list[tuple[str, str]] = []
    block: str | None = None
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if block is not None:
            if line == ")":
                block = None
            else:
                out.append((block, line))
            continue
        verb, _, rest = line.partition(" ")
        rest = rest.strip()
        if rest == "(":
            block = verb
        else:
            out.append((verb, rest))
    return out


def parse_release_gomod(text: str) -> ReleaseGoMod:
    """Read the ``go`` directive, ``godebug`` settings and staging replaces of a release go.mod."""
    go_directive = ""
    godebug: list[str] = []
    staging: list[str] = []
    for verb, rest in _directives(text):
        if verb == "go":
            go_directive = rest
        elif verb == "godebug":
            godebug.extend(part.strip() for part in rest.split(",") if part.strip())
        elif verb == "replace" and "=>" in rest:
            left, right = (side.split() for side in rest.split("=>", 1))
            if left and right and _STAGING_TARGET.match(right[0]):
                staging.append(left[0])
    if not go_directive:
        raise errors.BinaryError(
            "the Kubernetes release go.mod has no `go` directive",
            hint="the module cache may be corrupt: run `go clean -modcache` and retry",
        )
    return ReleaseGoMod(
        go_directive=go_directive,
        godebug=",".join(godebug),
        staging_modules=tuple(sorted(set(staging))),
    )


def parse_staging_modules(release_gomod_text: str) -> tuple[str, ...]:
    """Modules the release replaces with ``./staging/...`` (sorted, de-duplicated)."""
    return parse_release_gomod(release_gomod_text).staging_modules


def pins_with_release_gomod(pins: catalog.ReleasePins, release: ReleaseGoMod) -> catalog.ReleasePins:
    """The pins with the release go.mod's values, which win over the catalog's."""
    return dataclasses.replace(
        pins,
        go_directive=release.go_directive,
        godebug=release.godebug,
        staging_modules=release.staging_modules,
    )


def kwok_in_kubernetes_module(pins: catalog.ReleasePins) -> bool:
    """Whether kwok builds inside the Kubernetes wrapper (True) or in its own module (False).

    Inside only when the kwok tag targets the release's Kubernetes minor: the
    wrapper forces every staging module to ``v0.<minor>.<patch>``, which a kwok tag
    written against another minor does not compile with.
    """
    return pins.kwok_kubernetes == pins.kubernetes_minor


def kubernetes_module_packages(pins: catalog.ReleasePins) -> dict[str, str]:
    """Binary name → Go package for every command the Kubernetes wrapper builds."""
    return dict(KUBERNETES_PACKAGES if kwok_in_kubernetes_module(pins) else CONTROL_PLANE_PACKAGES)


def _godebug_lines(godebug: str) -> list[str]:
    entries = [e for e in godebug.split(",") if e]
    if not entries:
        return []
    if len(entries) == 1:
        return [f"godebug {entries[0]}", ""]
    return ["godebug (", *(f"\t{e}" for e in entries), ")", ""]


def render_wrapper_gomod(pins: catalog.ReleasePins, staging_modules: Sequence[str]) -> str:
    """The Kubernetes wrapper go.mod (with kwok when it shares the module) before ``go mod tidy``."""
    if kwok_in_kubernetes_module(pins):
        requires = [
            "require (",
            f"\t{KUBERNETES_MODULE} v{pins.kubernetes}",
            f"\t{KWOK_MODULE} v{pins.kwok}",
            ")",
        ]
    else:
        requires = [f"require {KUBERNETES_MODULE} v{pins.kubernetes}"]
    lines = [
        f"module {K8S_WRAPPER_MODULE}",
        "",
        f"go {pins.go_directive}",
        "",
        *_godebug_lines(pins.godebug),
        *requires,
        "",
        "replace (",
        *(f"\t{module} => {module} {pins.staging}" for module in sorted(set(staging_modules))),
        ")",
    ]
    return "\n".join(lines) + "\n"


def render_kwok_gomod(pins: catalog.ReleasePins, kwok_release: ReleaseGoMod) -> str:
    """kwok's own wrapper go.mod before ``go mod tidy``: kwok's go/godebug lines, no replaces.

    ``kwok_release`` is kwok's own go.mod, so the k8s.io versions Go selects are the
    ones kwok was released with.
    """
    lines = [
        f"module {KWOK_WRAPPER_MODULE}",
        "",
        f"go {kwok_release.go_directive}",
        "",
        *_godebug_lines(kwok_release.godebug),
        f"require {KWOK_MODULE} v{pins.kwok}",
    ]
    return "\n".join(lines) + "\n"


def render_etcd_gomod(pins: catalog.ReleasePins, go_directive: str) -> str:
    """The etcd wrapper go.mod (server, etcdctl, etcdutl at one version) before ``go mod tidy``."""
    lines = [
        f"module {ETCD_WRAPPER_MODULE}",
        "",
        f"go {go_directive}",
        "",
        "require (",
        *(f"\t{module} v{pins.etcd}" for module in ETCD_PACKAGES.values()),
        ")",
    ]
    return "\n".join(lines) + "\n"


def render_tools_go(packages: Sequence[str]) -> str:
    """A ``tools``-tagged file importing the commands, so ``go mod tidy`` keeps their modules."""
    if len(packages) == 1:
        imports = [f'import _ "{packages[0]}"']
    else:
        imports = ["import (", *(f'\t_ "{p}"' for p in packages), ")"]
    return "\n".join(["//go:build tools", "", "package tools", "", *imports]) + "\n"


def kubernetes_ldflags(pins: catalog.ReleasePins, *, build_date: str = BUILD_DATE) -> str:
    """``-s -w`` plus the version stamps ``kube-apiserver --version`` and ``/version`` report."""
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for key, value in (
            ("gitVersion", f"v{pins.kubernetes}"),
            ("gitMajor", pins.major),
            ("gitMinor", pins.minor),
            ("gitTreeState", "clean"),
            ("buildDate", build_date),
        ):
            flags.append(f"-X {package}.{key}={value}")
    return " ".join(flags)


def kubernetes_build_args(
    pins: catalog.ReleasePins, out_dir: Path, packages: Sequence[str], *, go: str = "go"
) -> list[str]:
    return [
        go,
        "build",
        "-v",
        "-trimpath",
        f"-tags={BUILD_TAGS}",
        "-ldflags",
        kubernetes_ldflags(pins),
        "-o",
        f"{out_dir}{os.sep}",
        *packages,
    ]


def kwok_build_args(out_dir: Path, packages: Sequence[str], *, go: str = "go") -> list[str]:
    """kwok in its own module: ``-s -w`` only; kwok's version is compiled into the tag."""
    return [go, "build", "-v", "-trimpath", "-ldflags", "-s -w", "-o", f"{out_dir}{os.sep}", *packages]


def etcd_build_args(out_file: Path, *, go: str = "go", package: str = ETCD_PACKAGE) -> list[str]:
    return [go, "build", "-v", "-trimpath", "-ldflags", "-s -w", "-o", str(out_file), package]


def go_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The environment for every ``go`` call: static binaries, modules resolved as needed.

    Keeps the user's ``GOMODCACHE``/``GOCACHE``/``GOPROXY``/``GOTOOLCHAIN`` so Go's
    own caches are shared with their other builds; ``GOWORK=off`` so a go.work
    elsewhere cannot leak in.
    """
    env = dict(base)
    flags = [f for f in env.get("GOFLAGS", "").split() if not f.startswith("-mod=")]
    env["GOFLAGS"] = " ".join([*flags, "-mod=mod"])
    env["CGO_ENABLED"] = "0"
    env["GOWORK"] = "off"
    return env


def go_version_tuple(version: str) -> tuple[int, ...]:
    """``"go1.26.8"`` or ``"1.26.0"`` → ``(1, 26, 8)``; pre-release suffixes are dropped."""
    numbers = re.findall(r"\d+", version.removeprefix("go").split("rc")[0].split("beta")[0])
    return tuple(int(n) for n in numbers[:3])


# --- effects: running go ----------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    """Binaries produced by :meth:`GoBuilder.build`."""

    paths: dict[str, Path]  # binary name → file in a work directory's bin/
    origins: dict[str, str]  # binary name → Go package
    go_version: str
    pins: catalog.ReleasePins  # with the release go.mod's go/godebug/staging values


class GoBuilder:
    """Runs the wrapper-module builds; one instance per install."""

    def __init__(
        self,
        work_root: Path,
        *,
        go: str = "go",
        env: Mapping[str, str] | None = None,
        phase: PhaseCallback | None = None,
    ) -> None:
        self.work_root = Path(work_root)
        self.go = go
        self._env = go_environment(os.environ if env is None else env)
        self._phase = phase or (lambda _phase, _detail: None)

    def kubernetes_dir(self, pins: catalog.ReleasePins) -> Path:
        return self.work_root / f"k8s-v{pins.kubernetes}"

    def kwok_dir(self, pins: catalog.ReleasePins) -> Path:
        """kwok's own wrapper module (used only when ``kwok_in_kubernetes_module`` is False)."""
        return self.work_root / f"kwok-v{pins.kwok}"

    def etcd_dir(self, pins: catalog.ReleasePins) -> Path:
        return self.work_root / f"etcd-v{pins.etcd}"

    def build(self, pins: catalog.ReleasePins, *, with_kwokctl: bool = True) -> BuildResult:
        """Build every binary into the work directories' ``bin/``; ``BinaryError`` on failure."""
        go_info = self._check_toolchain(pins)
        k8s_dir = self.kubernetes_dir(pins)
        kwok_dir = self.kwok_dir(pins)
        etcd_dir = self.etcd_dir(pins)

        self._phase(PHASE_RESOLVING, f"{KUBERNETES_MODULE}@v{pins.kubernetes}")
        release_text = self._module_gomod(f"{KUBERNETES_MODULE}@v{pins.kubernetes}", k8s_dir)
        release = parse_release_gomod(release_text)
        pins = pins_with_release_gomod(pins, release)
        k8s_packages = kubernetes_module_packages(pins)
        self._prepare_module(
            k8s_dir,
            render_wrapper_gomod(pins, release.staging_modules),
            render_tools_go(list(k8s_packages.values())),
        )
        kwok_separate = not kwok_in_kubernetes_module(pins)
        if kwok_separate:
            kwok_text = self._module_gomod(f"{KWOK_MODULE}@v{pins.kwok}", kwok_dir)
            self._prepare_module(
                kwok_dir,
                render_kwok_gomod(pins, parse_release_gomod(kwok_text)),
                render_tools_go(list(KWOK_PACKAGES.values())),
            )
        self._prepare_etcd(pins, etcd_dir)

        names = catalog.binary_names(with_kwokctl=with_kwokctl)
        packages = {n: p for n, p in k8s_packages.items() if n in names}
        k8s_bin = k8s_dir / "bin"
        k8s_bin.mkdir(exist_ok=True)
        self._run(
            kubernetes_build_args(pins, k8s_bin, list(packages.values()), go=self.go),
            cwd=k8s_dir,
            phase=PHASE_KUBERNETES,
            what=f"Kubernetes v{pins.kubernetes}",
        )
        paths = {name: k8s_bin / name for name in packages}
        if kwok_separate:
            kwok_packages = {n: p for n, p in KWOK_PACKAGES.items() if n in names}
            kwok_bin = kwok_dir / "bin"
            kwok_bin.mkdir(exist_ok=True)
            self._run(
                kwok_build_args(kwok_bin, list(kwok_packages.values()), go=self.go),
                cwd=kwok_dir,
                phase=PHASE_KWOK,
                what=f"kwok v{pins.kwok}",
            )
            paths |= {name: kwok_bin / name for name in kwok_packages}
            packages |= kwok_packages
        etcd_names = [n for n in ETCD_PACKAGES if n in names]
        paths |= self._build_etcd(pins, etcd_dir, etcd_names)
        origins = {name: f"{pkg}@v{pins.version_of(name)}" for name, pkg in packages.items()}
        origins |= {name: f"{ETCD_PACKAGES[name]}@v{pins.etcd}" for name in etcd_names}
        _check_produced(paths)
        return BuildResult(paths=paths, origins=origins, go_version=go_info["GOVERSION"], pins=pins)

    def build_etcd(self, pins: catalog.ReleasePins, names: Sequence[str]) -> BuildResult:
        """Build only binaries of the etcd wrapper (``ETCD_PACKAGES``): adds etcdctl and
        etcdutl to an install that predates them without relinking anything else."""
        unknown = sorted(set(names) - set(ETCD_PACKAGES))
        if unknown:
            raise ValueError(f"not built by the etcd wrapper: {unknown}")
        go_info = self._check_toolchain(pins)
        etcd_dir = self.etcd_dir(pins)
        self._phase(PHASE_RESOLVING, f"{ETCD_MODULE}@v{pins.etcd}")
        self._prepare_etcd(pins, etcd_dir)
        wanted = [n for n in ETCD_PACKAGES if n in names]
        paths = self._build_etcd(pins, etcd_dir, wanted)
        _check_produced(paths)
        origins = {name: f"{ETCD_PACKAGES[name]}@v{pins.etcd}" for name in wanted}
        return BuildResult(paths=paths, origins=origins, go_version=go_info["GOVERSION"], pins=pins)

    def _prepare_etcd(self, pins: catalog.ReleasePins, etcd_dir: Path) -> None:
        etcd_text = self._module_gomod(f"{ETCD_MODULE}@v{pins.etcd}", etcd_dir)
        etcd_go = max((parse_release_gomod(etcd_text).go_directive, pins.go_directive), key=go_version_tuple)
        self._prepare_module(
            etcd_dir, render_etcd_gomod(pins, etcd_go), render_tools_go(list(ETCD_PACKAGES.values()))
        )

    def _build_etcd(self, pins: catalog.ReleasePins, etcd_dir: Path, names: Sequence[str]) -> dict[str, Path]:
        etcd_bin = etcd_dir / "bin"
        etcd_bin.mkdir(exist_ok=True)
        paths = {}
        for name in names:
            self._run(
                etcd_build_args(etcd_bin / name, go=self.go, package=ETCD_PACKAGES[name]),
                cwd=etcd_dir,
                phase=PHASE_ETCD,
                what=f"{name} v{pins.etcd}",
            )
            paths[name] = etcd_bin / name
        return paths

    def clean_outputs(self, pins: catalog.ReleasePins) -> None:
        """Delete the built binaries (installed copies live in the cache; Go's caches stay)."""
        directories = [self.kubernetes_dir(pins), self.etcd_dir(pins)]
        if not kwok_in_kubernetes_module(pins):
            directories.append(self.kwok_dir(pins))
        for directory in directories:
            shutil.rmtree(directory / "bin", ignore_errors=True)

    # --- steps ---

    def _check_toolchain(self, pins: catalog.ReleasePins) -> dict[str, str]:
        resolved = shutil.which(self.go, path=self._env.get("PATH"))
        if resolved is None:
            raise errors.BinaryError(
                f"building from source needs the Go toolchain, but `{self.go}` is not on PATH",
                hint=f"install Go {pins.go_directive} or newer (https://go.dev/dl/), or download "
                f"official binaries with `pilothouse binaries install --version {pins.kubernetes}`",
            )
        self.go = resolved
        self.work_root.mkdir(parents=True, exist_ok=True)
        out = self._capture([self.go, "env", "-json", "GOVERSION", "GOTOOLCHAIN", "GOMODCACHE", "GOCACHE"])
        info: dict[str, str] = {str(k): str(v) for k, v in json.loads(out).items()}
        have, need = go_version_tuple(info.get("GOVERSION", "")), go_version_tuple(pins.go_directive)
        if have < need and info.get("GOTOOLCHAIN", "") == "local":
            raise errors.BinaryError(
                f"Kubernetes v{pins.kubernetes} needs Go {pins.go_directive} but `{self.go}` is "
                f"{info.get('GOVERSION')} and GOTOOLCHAIN=local forbids fetching a newer one",
                hint=f"install Go {pins.go_directive}+ or `export GOTOOLCHAIN=go{pins.go_directive}`",
            )
        return info

    def _module_gomod(self, module_at_version: str, work_dir: Path) -> str:
        """The go.mod of a published module version, via ``go mod download -json``."""
        work_dir.mkdir(parents=True, exist_ok=True)
        try:
            out = self._capture([self.go, "mod", "download", "-json", module_at_version], cwd=work_dir)
        except errors.BinaryError as exc:
            detail = _json_error(exc.context.get("stdout", ""))
            raise errors.BinaryError(
                f"could not fetch {module_at_version} from the Go module proxy: {detail or exc.message}",
                hint="check network access to the Go module proxy (GOPROXY)",
            ) from exc
        return Path(json.loads(out)["GoMod"]).read_text()

    def _prepare_module(self, work_dir: Path, gomod: str, tools_go: str) -> None:
        """Write the wrapper module unless the same inputs were already tidied there; tidy it."""
        work_dir.mkdir(parents=True, exist_ok=True)
        stamp_path = work_dir / "inputs.json"
        inputs = _sha256_text(gomod + "\0" + tools_go)
        stamp: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            stamp = json.loads(stamp_path.read_text())
        gomod_path = work_dir / "go.mod"
        current = gomod_path.read_text() if gomod_path.is_file() else ""
        if (
            stamp.get("inputs") == inputs
            and stamp.get("tidied") == _sha256_text(current)
            and (work_dir / "go.sum").is_file()
            and (work_dir / "tools.go").is_file()
        ):
            return  # resumed run: already tidied
        _write_atomic(work_dir / "tools.go", tools_go)
        _write_atomic(gomod_path, gomod)  # from scratch: tidy is cheap once modules are cached
        _write_atomic(stamp_path, json.dumps({"inputs": inputs, "tidied": None}))
        self._run([self.go, "mod", "tidy"], cwd=work_dir, phase=PHASE_RESOLVING, what="go mod tidy")
        tidied = _sha256_text(gomod_path.read_text())
        _write_atomic(stamp_path, json.dumps({"inputs": inputs, "tidied": tidied}))

    # --- process plumbing ---

    def _capture(self, args: list[str], *, cwd: Path | None = None) -> str:
        proc = subprocess.run(
            args,
            cwd=cwd or self.work_root,
            env=self._env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise errors.BinaryError(
                f"`{' '.join(args[1:])}` failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}",
                hint="check the Go toolchain and network access to the Go module proxy",
                stdout=proc.stdout,
            )
        return proc.stdout

    def _run(self, args: list[str], *, cwd: Path, phase: str, what: str) -> None:
        """Run ``go`` with its output appended to ``cwd/build.log``; tail of the log on failure."""
        log_path = cwd / "build.log"
        tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._phase(phase, "")
        with log_path.open("a", encoding="utf-8", errors="replace") as log:
            log.write(f"\n=== {datetime.now(UTC).isoformat(timespec='seconds')} $ {_quote(args)}\n")
            log.flush()
            proc = subprocess.Popen(
                args,
                cwd=cwd,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,  # so an interrupt can stop go and its compilers together
            )
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    log.write(line)
                    stripped = line.rstrip("\n")
                    tail.append(stripped)
                    self._phase(phase, stripped)
                returncode = proc.wait()
            except BaseException:
                _stop_group(proc)
                log.write("=== interrupted\n")
                raise
            log.write(f"=== exit {returncode}\n")
        if returncode != 0:
            last = "\n".join(tail)
            raise errors.BinaryError(
                f"{what} failed (`{' '.join(args[1:3])}` exit {returncode}); last lines of {log_path}:\n{last}",
                hint=f"fix the cause and re-run: the work directory {cwd} and Go's caches are reused",
                log=str(log_path),
            )


def _check_produced(paths: Mapping[str, Path]) -> None:
    for path in paths.values():
        if not path.is_file():
            raise errors.BinaryError(
                f"go build finished but {path} was not produced",
                hint=f"see {path.parent.parent / 'build.log'}",
            )


def _stop_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _json_error(stdout: str) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(stdout).get("Error", ""))
    return ""


def _quote(args: Sequence[str]) -> str:
    return " ".join(f"'{a}'" if (" " in a or not a) else a for a in args)


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
