#!/usr/bin/env bash
# Set up Pilothouse on a fresh Debian machine: system packages, a virtualenv with
# Pilothouse, and the Kubernetes binaries built from their Go modules (cached under
# ~/.cache/pilothouse/binaries/<version>, so a second run takes seconds).
#
#   scripts/setup.sh          # what `pilothouse up` needs
#   scripts/setup.sh --dev    # plus test and lint tools, and PostgreSQL for the store tests
set -euo pipefail
cd "$(dirname "$0")/.."

dev=false
[[ "${1:-}" == "--dev" ]] && dev=true

say() { printf '\n==> %s\n' "$*" >&2; }

# --- system packages (Debian) ------------------------------------------------
packages=(haproxy)
$dev && packages+=(postgresql prometheus prometheus-alertmanager wrk)  # wrk: the load generator of benchmarks/authz
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Pilothouse (and its tests) run their own HAProxy, PostgreSQL, Prometheus and Alertmanager processes;
  # the distribution's services are not needed.
  for service in haproxy postgresql prometheus prometheus-alertmanager; do
    if command -v systemctl >/dev/null && systemctl is-active -q "$service" 2>/dev/null; then $SUDO systemctl stop "$service" || true; fi
  done
fi

# --- Python ------------------------------------------------------------------
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "error: Pilothouse needs Python 3.11 or newer ($python is $("$python" --version 2>&1))" >&2; exit 1; }
if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  "$python" -m venv .venv
fi
say "installing Pilothouse into .venv"
.venv/bin/python -m pip install -q --upgrade pip
if $dev; then .venv/bin/python -m pip install -q -e ".[dev]"; else .venv/bin/python -m pip install -q -e .; fi

# --- Kubernetes binaries (built from Go modules; cached by version) -----------
command -v go >/dev/null || { echo "error: the Go toolchain is needed to build the Kubernetes binaries (https://go.dev/doc/install)" >&2; exit 1; }
version=$(.venv/bin/python -c 'from pilothouse.settings import load_settings; print(load_settings().kubernetes_version)')
say "Kubernetes v$version binaries (built once, then cached)"
.venv/bin/pilothouse binaries install --version "$version" --from-source
if $dev; then  # every supported version, so tests can upgrade 1.35 → 1.36; cached ones take seconds
  for other in $(.venv/bin/python -c 'from pilothouse.binaries.catalog import supported_versions; print(*supported_versions())'); do
    [[ "$other" == "$version" ]] && continue
    say "Kubernetes v$other binaries (for upgrade tests; built once, then cached)"
    .venv/bin/pilothouse binaries install --version "$other" --from-source
  done
fi

# --- a real S3-compatible server for the S3 backup tests (dev only; built once) ---
if $dev; then
  weed_dir=$(.venv/bin/python -c 'from pilothouse.settings import load_settings; print(load_settings().cache_dir / "seaweedfs")')
  if [[ ! -x "$weed_dir/weed" ]]; then
    say "SeaweedFS (S3-compatible server for the backup tests; built once, ~10 min on 2 cores)"
    work="$weed_dir/build"
    mkdir -p "$work"
    cp tools/seaweedfs/go.mod tools/seaweedfs/go.sum tools/seaweedfs/tools.go "$work/"
    (cd "$work" && CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=readonly \
      go build -trimpath -ldflags "-s -w" -o "$weed_dir/weed.part" github.com/seaweedfs/seaweedfs/weed)
    mv "$weed_dir/weed.part" "$weed_dir/weed"
  fi
fi

# --- Dex, a real OpenID Connect provider for the single sign-on tests (dev only; built once) ---
if $dev; then
  PILOTHOUSE_CACHE_DIR=$(.venv/bin/python -c 'from pilothouse.settings import load_settings; print(load_settings().cache_dir)') \
    scripts/build-dex.sh >/dev/null
fi

# --- Helm, for the tests that install real charts (dev only; built once) ---
if $dev; then
  PILOTHOUSE_CACHE_DIR=$(.venv/bin/python -c 'from pilothouse.settings import load_settings; print(load_settings().cache_dir)') \
    scripts/build-helm.sh >/dev/null
fi
