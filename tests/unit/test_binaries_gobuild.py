"""Tests for pilothouse.binaries.gobuild: wrapper modules, build flags, and the build driver.

The driver runs against a fake ``go`` (a small script that logs its calls and
writes version-printing binaries); the real toolchain build is exercised in CI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from pilothouse import errors
from pilothouse.binaries import cache as cache_mod
from pilothouse.binaries import catalog, gobuild, installer

PINS = catalog.pins_for("1.36.3")
PINS_135 = catalog.pins_for("1.35.4")

RELEASE_GOMOD = """\
// This is a generated file. Do not edit directly.
// Run hack/pin-dependency.sh to change pinned dependency versions.

module k8s.io/kubernetes

go 1.26.0

godebug default=go1.26

require (
\tgithub.com/spf13/cobra v1.10.2
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0 // indirect
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/apimachinery => ./staging/src/k8s.io/apimachinery
\tk8s.io/client-go => ./staging/src/k8s.io/client-go // a comment
\tgithub.com/example/fork => github.com/example/fork v1.2.3
\tk8s.io/streaming => ./staging/src/k8s.io/streaming
)

replace k8s.io/kms v0.0.0 => ./staging/src/k8s.io/kms
"""

EXPECTED_WRAPPER = """\
module pilothouse.local/k8s-binaries

go 1.26.0

godebug default=go1.26

require (
\tk8s.io/kubernetes v1.36.3
\tsigs.k8s.io/kwok v0.8.0
)

replace (
\tk8s.io/api => k8s.io/api v0.36.3
\tk8s.io/apimachinery => k8s.io/apimachinery v0.36.3
\tk8s.io/client-go => k8s.io/client-go v0.36.3
\tk8s.io/kms => k8s.io/kms v0.36.3
\tk8s.io/streaming => k8s.io/streaming v0.36.3
)
"""

RELEASE_GOMOD_135 = """\
module k8s.io/kubernetes

go 1.25.0

godebug default=go1.25

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
)
"""

# kwok v0.8.0 does not compile against k8s.io v0.35: the 1.35 wrapper builds the control plane only.
EXPECTED_WRAPPER_135 = """\
module pilothouse.local/k8s-binaries

go 1.25.0

godebug default=go1.25

require k8s.io/kubernetes v1.35.4

replace (
\tk8s.io/api => k8s.io/api v0.35.4
\tk8s.io/client-go => k8s.io/client-go v0.35.4
)
"""

KWOK_GOMOD = """\
module sigs.k8s.io/kwok

go 1.26.0

require (
\tk8s.io/api v0.36.1
\tk8s.io/client-go v0.36.1
)
"""

# kwok's own go line, no godebug, no replaces: Go selects kwok's own k8s.io versions.
EXPECTED_KWOK_WRAPPER = """\
module pilothouse.local/kwok-binaries

go 1.26.0

require sigs.k8s.io/kwok v0.8.0
"""

# What the hand-proven recipe used (/tmp/k8sbuild/ldflags.txt).
EXPECTED_LDFLAGS = (
    "-s -w"
    " -X k8s.io/component-base/version.gitVersion=v1.36.3 -X k8s.io/component-base/version.gitMajor=1"
    " -X k8s.io/component-base/version.gitMinor=36 -X k8s.io/component-base/version.gitTreeState=clean"
    " -X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z"
    " -X k8s.io/client-go/pkg/version.gitVersion=v1.36.3 -X k8s.io/client-go/pkg/version.gitMajor=1"
    " -X k8s.io/client-go/pkg/version.gitMinor=36 -X k8s.io/client-go/pkg/version.gitTreeState=clean"
    " -X k8s.io/client-go/pkg/version.buildDate=2026-01-01T00:00:00Z"
)


# --- pure functions ---------------------------------------------------------------------------


def test_parse_staging_modules_takes_only_staging_replaces() -> None:
    assert gobuild.parse_staging_modules(RELEASE_GOMOD) == (
        "k8s.io/api",
        "k8s.io/apimachinery",
        "k8s.io/client-go",
        "k8s.io/kms",
        "k8s.io/streaming",
    )


def test_parse_release_gomod_copies_go_and_godebug() -> None:
    release = gobuild.parse_release_gomod(RELEASE_GOMOD)
    assert release.go_directive == "1.26.0"
    assert release.godebug == "default=go1.26"


def test_parse_release_gomod_godebug_block() -> None:
    text = "module m\n\ngo 1.25.0\n\ngodebug (\n\tdefault=go1.25\n\tx509sha1=1\n)\n"
    release = gobuild.parse_release_gomod(text)
    assert release.godebug == "default=go1.25,x509sha1=1"
    rendered = gobuild.render_wrapper_gomod(gobuild.pins_with_release_gomod(PINS, release), ["k8s.io/api"])
    assert "godebug (\n\tdefault=go1.25\n\tx509sha1=1\n)\n" in rendered
    assert "go 1.25.0\n" in rendered


def test_parse_release_gomod_without_go_directive() -> None:
    with pytest.raises(errors.BinaryError, match="no `go` directive"):
        gobuild.parse_release_gomod("module m\n")


def test_render_wrapper_gomod_for_1_36_3() -> None:
    staging = gobuild.parse_staging_modules(RELEASE_GOMOD)
    assert gobuild.render_wrapper_gomod(PINS, staging) == EXPECTED_WRAPPER


def test_render_wrapper_gomod_replaces_every_staging_module_of_the_catalog() -> None:
    rendered = gobuild.render_wrapper_gomod(PINS, PINS.staging_modules)
    replace_lines = [line.strip() for line in rendered.splitlines() if "=>" in line]
    assert replace_lines == [f"{m} => {m} v0.36.3" for m in PINS.staging_modules]
    assert len(replace_lines) == 33
    assert "godebug default=go1.26\n" in rendered


def test_render_wrapper_gomod_without_godebug() -> None:
    pins = gobuild.pins_with_release_gomod(PINS, gobuild.ReleaseGoMod("1.26.0", "", ("k8s.io/api",)))
    assert "godebug" not in gobuild.render_wrapper_gomod(pins, pins.staging_modules)


def test_render_etcd_gomod_and_tools() -> None:
    assert gobuild.render_etcd_gomod(PINS, "1.26.0") == (
        "module pilothouse.local/etcd-binaries\n\ngo 1.26.0\n\nrequire (\n"
        "\tgo.etcd.io/etcd/server/v3 v3.6.16\n\tgo.etcd.io/etcd/etcdctl/v3 v3.6.16\n"
        "\tgo.etcd.io/etcd/etcdutl/v3 v3.6.16\n)\n"
    )
    assert gobuild.render_tools_go([gobuild.ETCD_PACKAGE]) == (
        '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n'
    )
    tools = gobuild.render_tools_go(list(gobuild.KUBERNETES_PACKAGES.values()))
    assert tools.startswith("//go:build tools\n\npackage tools\n\nimport (\n")
    assert '\t_ "sigs.k8s.io/kwok/cmd/kwokctl"\n)\n' in tools


def _plain_pins(kubernetes: str, kwok_kubernetes: str) -> catalog.ReleasePins:
    _, minor, patch = kubernetes.split(".")
    return catalog.ReleasePins(
        kubernetes=kubernetes,
        staging=f"v0.{minor}.{patch}",
        etcd="3.6.16",
        kwok="0.8.0",
        kwok_kubernetes=kwok_kubernetes,
        go_directive="1.26.0",
        godebug="",
        staging_modules=("k8s.io/api",),
    )


@pytest.mark.parametrize(
    ("kubernetes", "kwok_kubernetes", "shared"),
    [
        ("1.36.3", "1.36", True),
        ("1.36.0", "1.36", True),
        ("1.35.4", "1.36", False),
        ("1.33.1", "1.33", True),
        ("1.3.6", "1.36", False),  # minor compared as a whole, not as a prefix
        ("2.36.0", "1.36", False),
    ],
)
def test_kwok_in_kubernetes_module_compares_minors(
    kubernetes: str, kwok_kubernetes: str, shared: bool
) -> None:
    pins = _plain_pins(kubernetes, kwok_kubernetes)
    assert gobuild.kwok_in_kubernetes_module(pins) is shared
    packages = gobuild.kubernetes_module_packages(pins)
    assert list(packages) == (
        [*gobuild.CONTROL_PLANE_PACKAGES, *gobuild.KWOK_PACKAGES]
        if shared
        else [*gobuild.CONTROL_PLANE_PACKAGES]
    )


def test_kwok_module_decision_for_the_catalog() -> None:
    assert gobuild.kwok_in_kubernetes_module(PINS)
    assert not gobuild.kwok_in_kubernetes_module(PINS_135)
    assert gobuild.kubernetes_module_packages(PINS) == gobuild.KUBERNETES_PACKAGES


def test_render_wrapper_gomod_for_1_35_4_has_no_kwok() -> None:
    release = gobuild.parse_release_gomod(RELEASE_GOMOD_135)
    pins = gobuild.pins_with_release_gomod(PINS_135, release)
    assert gobuild.render_wrapper_gomod(pins, release.staging_modules) == EXPECTED_WRAPPER_135
    full = gobuild.render_wrapper_gomod(PINS_135, PINS_135.staging_modules)
    assert gobuild.KWOK_MODULE not in full
    assert len([line for line in full.splitlines() if "=> " in line and "v0.35.4" in line]) == 31


def test_render_kwok_gomod() -> None:
    kwok_release = gobuild.parse_release_gomod(KWOK_GOMOD)
    assert gobuild.render_kwok_gomod(PINS_135, kwok_release) == EXPECTED_KWOK_WRAPPER
    with_godebug = gobuild.ReleaseGoMod("1.27.0", "default=go1.27", ())
    assert gobuild.render_kwok_gomod(PINS_135, with_godebug) == (
        "module pilothouse.local/kwok-binaries\n\ngo 1.27.0\n\ngodebug default=go1.27\n\n"
        "require sigs.k8s.io/kwok v0.8.0\n"
    )
    tools = gobuild.render_tools_go(list(gobuild.KWOK_PACKAGES.values()))
    assert tools.endswith(
        'import (\n\t_ "sigs.k8s.io/kwok/cmd/kwok"\n\t_ "sigs.k8s.io/kwok/cmd/kwokctl"\n)\n'
    )


def test_kwok_build_args(tmp_path: Path) -> None:
    args = gobuild.kwok_build_args(tmp_path, list(gobuild.KWOK_PACKAGES.values()))
    assert args == [
        "go",
        "build",
        "-v",
        "-trimpath",
        "-ldflags",
        "-s -w",
        "-o",
        f"{tmp_path}/",
        "sigs.k8s.io/kwok/cmd/kwok",
        "sigs.k8s.io/kwok/cmd/kwokctl",
    ]


def test_ldflags_match_the_proven_recipe() -> None:
    assert gobuild.kubernetes_ldflags(PINS) == EXPECTED_LDFLAGS


def test_build_args(tmp_path: Path) -> None:
    args = gobuild.kubernetes_build_args(PINS, tmp_path, ["k8s.io/kubernetes/cmd/kube-apiserver"])
    assert args[:5] == ["go", "build", "-v", "-trimpath", "-tags=selinux,notest"]
    assert args[5:7] == ["-ldflags", EXPECTED_LDFLAGS]
    assert args[7:] == ["-o", f"{tmp_path}/", "k8s.io/kubernetes/cmd/kube-apiserver"]
    etcd = gobuild.etcd_build_args(tmp_path / "etcd")
    assert etcd[-3:] == ["-o", str(tmp_path / "etcd"), "go.etcd.io/etcd/server/v3"]
    assert "-trimpath" in etcd


def test_go_environment_keeps_user_caches_and_forces_mod_mod() -> None:
    base = {"GOFLAGS": "-buildvcs=false -mod=readonly", "GOCACHE": "/c", "GOMODCACHE": "/m", "PATH": "/bin"}
    env = gobuild.go_environment(base)
    assert env["GOFLAGS"] == "-buildvcs=false -mod=mod"
    assert (env["GOCACHE"], env["GOMODCACHE"], env["PATH"]) == ("/c", "/m", "/bin")
    assert env["CGO_ENABLED"] == "0"
    assert env["GOWORK"] == "off"
    assert gobuild.go_environment({})["GOFLAGS"] == "-mod=mod"


@pytest.mark.parametrize(
    ("given", "expected"), [("go1.26.8", (1, 26, 8)), ("1.26.0", (1, 26, 0)), ("go1.27rc1", (1, 27))]
)
def test_go_version_tuple(given: str, expected: tuple[int, ...]) -> None:
    assert gobuild.go_version_tuple(given) == expected


# --- the driver, against a fake go ------------------------------------------------------------

FAKE_GO = """\
#!{python}
import json, os, sys
from pathlib import Path

root = Path({root!r})
args = sys.argv[1:]
with open(root / "calls.jsonl", "a") as log:
    log.write(json.dumps({{"args": args, "cwd": os.getcwd(), "GOFLAGS": os.environ.get("GOFLAGS"),
                          "CGO_ENABLED": os.environ.get("CGO_ENABLED")}}) + "\\n")
if args[:2] == ["env", "-json"]:
    print(json.dumps({{"GOVERSION": os.environ.get("FAKE_GOVERSION", "go1.26.8"), "GOTOOLCHAIN": "local",
                      "GOMODCACHE": "/m", "GOCACHE": "/c"}}))
elif args[:3] == ["mod", "download", "-json"]:
    module = args[3]
    if "v9.9.9" in module:
        print(json.dumps({{"Path": module, "Error": "not available"}}))
        sys.exit(1)
    if module.startswith("go.etcd.io"):
        name = "etcd.mod"
    elif module.startswith("sigs.k8s.io/kwok"):
        name = "kwok.mod"
    else:
        name = "k8s135.mod" if module.endswith("v1.35.4") else "k8s.mod"
    print(json.dumps({{"Path": module, "GoMod": str(root / name)}}))
elif args[:2] == ["mod", "tidy"]:
    print("go: finding module for package k8s.io/kubernetes/cmd/kube-apiserver", file=sys.stderr)
    Path("go.sum").write_text("")
elif args[0] == "build":
    for i in range(30):
        print(f"example.com/pkg{{i}}", file=sys.stderr)
    if os.environ.get("FAKE_GO_FAIL"):
        print("compile: out of memory", file=sys.stderr)
        sys.exit(2)
    out = args[args.index("-o") + 1]
    pkgs = args[args.index("-o") + 2:]
    outputs = [Path(out) / p.rsplit("/", 1)[-1] for p in pkgs] if out.endswith("/") else [Path(out)]
    texts = {{"etcd": "etcd Version: 3.6.16", "kwok": "kwok version v0.8.0 go1.26.8 (linux/amd64)",
             "kwokctl": "kwokctl version v0.8.0 go1.26.8 (linux/amd64)",
             "etcdctl": "etcdctl version: 3.6.16", "etcdutl": "etcdutl version: 3.6.16"}}
    ldflags = args[args.index("-ldflags") + 1]
    stamped = [f.split("=", 1)[1] for f in ldflags.split() if f.startswith("k8s.io/component-base/version.gitVersion=")]
    for target in outputs:
        text = texts.get(target.name, "Kubernetes " + (stamped[0] if stamped else "v0.0.0"))
        target.write_text("#!/bin/sh\\necho '" + text + "'\\n")
        target.chmod(0o755)
else:
    sys.exit(f"fake go: unexpected {{args}}")
"""


@pytest.fixture
def fake_go(tmp_path: Path) -> Path:
    root = tmp_path / "fakego"
    root.mkdir()
    (root / "k8s.mod").write_text(RELEASE_GOMOD)
    (root / "k8s135.mod").write_text(RELEASE_GOMOD_135)
    (root / "kwok.mod").write_text(KWOK_GOMOD)
    (root / "etcd.mod").write_text("module go.etcd.io/etcd/server/v3\n\ngo 1.26.0\n\ntoolchain go1.26.10\n")
    go = root / "go"
    go.write_text(FAKE_GO.format(python=sys.executable, root=str(root)))
    go.chmod(0o755)
    return go


def _calls(go: Path) -> list[dict[str, Any]]:
    lines = (go.parent / "calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _commands(go: Path) -> list[str]:
    return [" ".join(str(a) for a in call["args"][:2]) for call in _calls(go)]


def test_build_runs_the_recipe(tmp_path: Path, fake_go: Path) -> None:
    phases: list[str] = []
    builder = gobuild.GoBuilder(
        tmp_path / "gobuild", go=str(fake_go), env=dict(os.environ), phase=lambda p, _d: phases.append(p)
    )
    result = builder.build(PINS)

    assert _commands(fake_go) == [
        "env -json",
        "mod download",
        "mod tidy",
        "mod download",
        "mod tidy",
        "build -v",
        "build -v",
        "build -v",
        "build -v",
    ]
    k8s_dir = tmp_path / "gobuild" / "k8s-v1.36.3"
    etcd_dir = tmp_path / "gobuild" / "etcd-v3.6.16"
    assert (k8s_dir / "go.mod").read_text() == EXPECTED_WRAPPER
    assert "k8s.io/kubernetes/cmd/kube-apiserver" in (k8s_dir / "tools.go").read_text()
    assert (
        (etcd_dir / "go.mod").read_text().startswith("module pilothouse.local/etcd-binaries\n\ngo 1.26.0\n")
    )
    builds = [c for c in _calls(fake_go) if c["args"][0] == "build"]
    assert all(c["GOFLAGS"] is not None and "-mod=mod" in str(c["GOFLAGS"]) for c in builds)
    assert all(c["CGO_ENABLED"] == "0" for c in builds)
    assert builds[0]["cwd"] == str(k8s_dir)
    assert [b["cwd"] for b in builds[1:]] == [str(etcd_dir)] * 3
    assert [b["args"][-1] for b in builds[1:]] == list(gobuild.ETCD_PACKAGES.values())
    assert (etcd_dir / "tools.go").read_text().count("go.etcd.io/etcd/") == 3

    assert set(result.paths) == set(catalog.binary_names())
    assert result.paths["etcd"] == etcd_dir / "bin" / "etcd"
    assert result.origins["kwok"] == "sigs.k8s.io/kwok/cmd/kwok@v0.8.0"
    assert result.go_version == "go1.26.8"
    assert result.pins.staging_modules == gobuild.parse_staging_modules(RELEASE_GOMOD)
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == [
        gobuild.PHASE_RESOLVING,
        gobuild.PHASE_KUBERNETES,
        gobuild.PHASE_ETCD,
    ]
    assert "example.com/pkg29" in (k8s_dir / "build.log").read_text()


def test_rerun_reuses_the_work_dir_without_retidying(tmp_path: Path, fake_go: Path) -> None:
    builder = gobuild.GoBuilder(tmp_path / "gobuild", go=str(fake_go))
    builder.build(PINS)
    (fake_go.parent / "calls.jsonl").unlink()
    builder.build(PINS, with_kwokctl=False)
    assert "mod tidy" not in _commands(fake_go)
    build = next(c for c in _calls(fake_go) if c["args"][0] == "build")
    assert "sigs.k8s.io/kwok/cmd/kwokctl" not in build["args"]


def test_changed_inputs_rewrite_and_retidy(tmp_path: Path, fake_go: Path) -> None:
    builder = gobuild.GoBuilder(tmp_path / "gobuild", go=str(fake_go))
    builder.build(PINS)
    gomod = tmp_path / "gobuild" / "k8s-v1.36.3" / "go.mod"
    gomod.write_text(gomod.read_text() + "// edited by hand\n")
    (fake_go.parent / "calls.jsonl").unlink()
    builder.build(PINS)
    assert _commands(fake_go).count("mod tidy") == 1  # only the k8s module: its go.mod no longer matches
    assert gomod.read_text() == EXPECTED_WRAPPER


def test_failed_build_quotes_the_log_tail(tmp_path: Path, fake_go: Path) -> None:
    env = dict(os.environ, FAKE_GO_FAIL="1")
    builder = gobuild.GoBuilder(tmp_path / "gobuild", go=str(fake_go), env=env)
    with pytest.raises(errors.BinaryError) as info:
        builder.build(PINS)
    message = info.value.message
    assert message.startswith("Kubernetes v1.36.3 failed (`build -v` exit 2)")
    assert "compile: out of memory" in message
    assert "example.com/pkg29" in message
    assert "example.com/pkg5\n" not in message  # only the last 20 lines
    assert "reused" in info.value.hint
    log = Path(info.value.context["log"]).read_text()
    assert "example.com/pkg0" in log
    assert "=== exit 2" in log


def test_missing_go(tmp_path: Path) -> None:
    builder = gobuild.GoBuilder(tmp_path, go=str(tmp_path / "no-such-go"))
    with pytest.raises(errors.BinaryError) as info:
        builder.build(PINS)
    assert "needs the Go toolchain" in info.value.message
    assert "https://go.dev/dl/" in info.value.hint


def test_too_old_go_with_local_toolchain(tmp_path: Path, fake_go: Path) -> None:
    env = dict(os.environ, FAKE_GOVERSION="go1.25.3")
    with pytest.raises(errors.BinaryError, match=r"needs Go 1\.26\.0") as info:
        gobuild.GoBuilder(tmp_path, go=str(fake_go), env=env).build(PINS)
    assert "GOTOOLCHAIN=go1.26.0" in info.value.hint


def test_unavailable_module_version(tmp_path: Path, fake_go: Path) -> None:
    pins = dataclasses.replace(PINS, kubernetes="9.9.9")
    with pytest.raises(
        errors.BinaryError, match=r"could not fetch k8s\.io/kubernetes@v9\.9\.9.*not available"
    ):
        gobuild.GoBuilder(tmp_path, go=str(fake_go)).build(pins)


def test_install_tops_up_missing_etcd_tools_without_touching_the_rest(tmp_path: Path, fake_go: Path) -> None:
    """An install made before etcdctl/etcdutl existed gets just those two, in place."""
    cache = cache_mod.BinaryCache(tmp_path / "binaries")
    installer.install("1.36.3", cache=cache, source="source", go=str(fake_go))
    target = cache.version_dir("1.36.3")
    for tool in ("etcdctl", "etcdutl"):
        (target / tool).unlink()
    body = json.loads((target / "manifest.json").read_text())
    del body["binaries"]["etcdctl"], body["binaries"]["etcdutl"]
    (target / "manifest.json").write_text(json.dumps(body))
    apiserver_inode = (target / "kube-apiserver").stat().st_ino
    (fake_go.parent / "calls.jsonl").unlink()

    installer.install("1.36.3", cache=cache, source="source", go=str(fake_go))

    builds = [c["args"][-1] for c in _calls(fake_go) if c["args"][0] == "build"]
    assert builds == ["go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdutl/v3"]
    assert (target / "kube-apiserver").stat().st_ino == apiserver_inode  # not replaced
    recorded = cache.verify("1.36.3")
    assert set(recorded.binaries) == set(catalog.binary_names())
    assert recorded.binaries["etcdutl"].origin == "go.etcd.io/etcd/etcdutl/v3@v3.6.16"
    assert recorded.installed_at == body["installed_at"]


def test_install_from_source_end_to_end_with_fake_go(tmp_path: Path, fake_go: Path) -> None:
    cache = cache_mod.BinaryCache(tmp_path / "binaries")
    phases: list[tuple[str, str]] = []
    path = installer.install(
        "v1.36.3", cache=cache, source="source", go=str(fake_go), phase=lambda p, d: phases.append((p, d))
    )
    assert path == cache.version_dir("1.36.3")
    recorded = cache.verify("1.36.3")
    assert recorded.source == "source"
    assert {r.source for r in recorded.binaries.values()} == {"source"}
    assert recorded.binaries["etcd"].version == "3.6.16"
    assert recorded.extra["go_version"] == "go1.26.8"
    assert recorded.pins["godebug"] == "default=go1.26"
    assert (gobuild.PHASE_VERIFYING, "kube-apiserver --version") in phases
    # built outputs are dropped once installed; the wrapper modules stay for the next build
    assert not (cache.gobuild_root / "k8s-v1.36.3" / "bin").exists()
    assert (cache.gobuild_root / "k8s-v1.36.3" / "go.sum").exists()


def test_build_1_35_4_builds_kwok_in_its_own_module(tmp_path: Path, fake_go: Path) -> None:
    phases: list[str] = []
    builder = gobuild.GoBuilder(tmp_path / "gobuild", go=str(fake_go), phase=lambda p, _d: phases.append(p))
    result = builder.build(PINS_135)

    assert _commands(fake_go) == [
        "env -json",
        "mod download",
        "mod tidy",
        "mod download",
        "mod tidy",
        "mod download",
        "mod tidy",
        "build -v",
        "build -v",
        "build -v",
        "build -v",
        "build -v",
    ]
    downloads = [c["args"][3] for c in _calls(fake_go) if c["args"][:2] == ["mod", "download"]]
    assert downloads == [
        "k8s.io/kubernetes@v1.35.4",
        "sigs.k8s.io/kwok@v0.8.0",
        "go.etcd.io/etcd/server/v3@v3.6.16",
    ]
    k8s_dir = tmp_path / "gobuild" / "k8s-v1.35.4"
    kwok_dir = tmp_path / "gobuild" / "kwok-v0.8.0"
    etcd_dir = tmp_path / "gobuild" / "etcd-v3.6.16"
    assert (k8s_dir / "go.mod").read_text() == EXPECTED_WRAPPER_135
    assert "sigs.k8s.io/kwok" not in (k8s_dir / "tools.go").read_text()
    assert (kwok_dir / "go.mod").read_text() == EXPECTED_KWOK_WRAPPER
    assert "sigs.k8s.io/kwok/cmd/kwokctl" in (kwok_dir / "tools.go").read_text()

    builds = [c for c in _calls(fake_go) if c["args"][0] == "build"]
    assert [b["cwd"] for b in builds] == [str(k8s_dir), str(kwok_dir), *[str(etcd_dir)] * 3]
    assert builds[0]["args"][-3:] == list(gobuild.CONTROL_PLANE_PACKAGES.values())
    assert (
        builds[1]["args"]
        == gobuild.kwok_build_args(kwok_dir / "bin", list(gobuild.KWOK_PACKAGES.values()))[1:]
    )
    assert "gitVersion=v1.35.4" in builds[0]["args"][builds[0]["args"].index("-ldflags") + 1]

    assert set(result.paths) == set(catalog.binary_names())
    assert result.paths["kwok"] == kwok_dir / "bin" / "kwok"
    assert result.paths["kwokctl"] == kwok_dir / "bin" / "kwokctl"
    assert result.paths["kube-apiserver"] == k8s_dir / "bin" / "kube-apiserver"
    assert result.origins["kwok"] == "sigs.k8s.io/kwok/cmd/kwok@v0.8.0"
    assert result.origins["kube-scheduler"] == "k8s.io/kubernetes/cmd/kube-scheduler@v1.35.4"
    assert (result.pins.go_directive, result.pins.godebug) == ("1.25.0", "default=go1.25")
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == [
        gobuild.PHASE_RESOLVING,
        gobuild.PHASE_KUBERNETES,
        gobuild.PHASE_KWOK,
        gobuild.PHASE_ETCD,
    ]

    (fake_go.parent / "calls.jsonl").unlink()
    builder.build(PINS_135, with_kwokctl=False)
    assert "mod tidy" not in _commands(fake_go)
    kwok_build = [c for c in _calls(fake_go) if c["args"][0] == "build"][1]
    assert kwok_build["args"][-1] == "sigs.k8s.io/kwok/cmd/kwok"


def test_install_1_35_4_next_to_1_36_3(tmp_path: Path, fake_go: Path) -> None:
    cache = cache_mod.BinaryCache(tmp_path / "binaries")
    installer.install("1.36.3", cache=cache, source="source", go=str(fake_go))
    before = cache.verify("1.36.3")
    installer.install("1.35.4", cache=cache, source="source", go=str(fake_go))

    assert cache.installed_versions() == ["1.35.4", "1.36.3"]
    assert cache.verify("1.36.3") == before  # untouched
    recorded = cache.verify("1.35.4")
    assert recorded.binaries["kwok"].version == "0.8.0"
    assert recorded.binaries["kube-apiserver"].version == "1.35.4"
    assert recorded.pins["kwok_kubernetes"] == "1.36"
    assert recorded.pins["godebug"] == "default=go1.25"
    assert not (cache.gobuild_root / "kwok-v0.8.0" / "bin").exists()
    assert (cache.gobuild_root / "kwok-v0.8.0" / "go.sum").exists()


def test_source_build_with_wrong_version_installs_nothing(tmp_path: Path, fake_go: Path) -> None:
    script = fake_go.read_text().replace(
        '"Kubernetes " + (stamped[0] if stamped else "v0.0.0")', '"Kubernetes v0.0.0"'
    )
    fake_go.write_text(script)
    cache = cache_mod.BinaryCache(tmp_path / "binaries")
    with pytest.raises(
        errors.BinaryError, match=r"kube-apiserver reports version 0\.0\.0, expected 1\.36\.3"
    ):
        installer.install("1.36.3", cache=cache, source="source", go=str(fake_go))
    assert cache.installed_versions() == []
    assert [p.name for p in cache.root.iterdir() if p.name.startswith(".staging")] == []
