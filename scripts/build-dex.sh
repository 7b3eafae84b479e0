#!/usr/bin/env bash
# Build Dex, the OpenID Connect provider that the single sign-on tests log in through, from
# the wrapper module in tools/dex (go.mod and go.sum pinned), once, into the cache:
#
#   <cache>/tools/dex-v2.45.1/dex      <cache> = $PILOTHOUSE_CACHE_DIR, else ~/.cache/pilothouse
#   <cache>/tools/dex-v2.45.1/build/   the work copy of tools/dex and build.log
#
#   scripts/build-dex.sh               build unless cached (a cached binary returns at once)
#   scripts/build-dex.sh --print-path  only print where the binary is, or will be
#
# Hard-won facts:
# - Dex tags v2.x.y, but its go.mod says `module github.com/dexidp/dex` (no /v2), so Go knows
#   its commits only by pseudo-versions: v2.45.1 is v0.0.0-20260303133905-11d2eeb52b42. The
#   Go module proxy here serves exact versions only: `@v2.45.1`, `@latest` or a commit hash fail.
# - Its go.mod replaces github.com/dexidp/dex/api/v2 with ./api/v2, so `go install …@ver` is
#   refused; tools/dex requires the published api/v2 v2.4.0 (at v2.45.1, ./api/v2 differs from
#   it only in its go.mod).
# - v2.45 is the first release whose staticPasswords carry `groups` (Dex PR #4456), so the tests
#   get a real `groups` claim from the password login form without another connector.
# - CGO_ENABLED=0 costs only the sqlite3 storage; the tests use `memory`.
# - Cold (empty module and build caches): 230 s on 2 cores, ~500 MiB RSS; cached: instant.
set -euo pipefail
cd "$(dirname "$0")/.."

DEX_VERSION=v2.45.1

cache=${PILOTHOUSE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pilothouse}
target="$cache/tools/dex-$DEX_VERSION/dex"

if [[ "${1:-}" == "--print-path" || -x "$target" ]]; then
  echo "$target"
  exit 0
fi
command -v go >/dev/null || { echo "error: the Go toolchain is needed to build Dex (https://go.dev/doc/install)" >&2; exit 1; }
grep -q "^require github.com/dexidp/dex v0.0.0-20260303133905-11d2eeb52b42$" tools/dex/go.mod ||
  { echo "error: tools/dex/go.mod does not pin Dex $DEX_VERSION: update DEX_VERSION in $0 with it" >&2; exit 1; }

work="$(dirname "$target")/build"
mkdir -p "$work"
cp tools/dex/go.mod tools/dex/go.sum tools/dex/tools.go "$work/"
started=$(date +%s)
echo "building Dex $DEX_VERSION from its Go module (cold: about 4 minutes; log: $work/build.log)" >&2
(
  cd "$work"
  CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=readonly \
    go build -trimpath -ldflags "-s -w -X main.version=$DEX_VERSION" -o "$target.part" github.com/dexidp/dex/cmd/dex
) >"$work/build.log" 2>&1 || { echo "error: building Dex failed; last lines of $work/build.log:" >&2; tail -20 "$work/build.log" >&2; exit 1; }
"$target.part" version | grep -q "$DEX_VERSION" || { echo "error: the built Dex does not report $DEX_VERSION" >&2; exit 1; }
mv -f "$target.part" "$target"  # only a complete, working binary gets the final name
echo "built Dex $DEX_VERSION in $(($(date +%s) - started)) s" >&2
echo "$target"
