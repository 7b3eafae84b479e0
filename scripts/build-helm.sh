#!/usr/bin/env bash
# Build the Helm CLI from its Go module, once, into the cache:
#
#   <cache>/tools/helm-v3.22.0/helm    <cache> = $PILOTHOUSE_CACHE_DIR, else ~/.cache/pilothouse
#
#   scripts/build-helm.sh               build unless cached (a cached binary returns at once)
#   scripts/build-helm.sh --print-path  only print where the binary is, or will be
#   HELM_VERSION=v3.21.4 scripts/build-helm.sh
#
# Pilothouse reads Helm releases itself (kube/api_usage.py); the binary is for the tests that
# install real charts (tests/integration/test_api_usage.py). It prints the binary's path.
#
# Facts:
# - helm.sh/helm/v3's go.mod has no replace directives, so `go install …/cmd/helm@vX` builds it
#   directly; the proxy serves v3 releases up to v3.22.0.
# - The version is stamped with -X …/internal/version.version (Helm's Makefile does the same;
#   without it `helm version` reports its compiled-in default, v3.22).
# - Cold (empty module and build caches): 249 s on 2 cores, most of it downloading modules;
#   cached: instant.
set -euo pipefail

version=${HELM_VERSION:-v3.22.0}
cache=${PILOTHOUSE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pilothouse}
dir="$cache/tools/helm-$version"
target="$dir/helm"

if [[ "${1:-}" == "--print-path" || -x "$target" ]]; then
  echo "$target"
  exit 0
fi
command -v go >/dev/null || { echo "error: the Go toolchain is needed to build Helm (https://go.dev/doc/install)" >&2; exit 1; }
mkdir -p "$dir"
printf '==> building Helm %s from helm.sh/helm/v3 (once, then cached in %s)\n' "$version" "$dir" >&2
# Build into a temporary GOBIN and move the binary in last, so an interrupted build never
# leaves a half-written binary that a later run would take as cached.
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
  "helm.sh/helm/v3/cmd/helm@$version"
mv "$tmp/helm" "$target"
echo "$target"
