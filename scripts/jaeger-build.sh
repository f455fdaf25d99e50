#!/usr/bin/env bash
# Build Jaeger (v2 all-in-one: `cmd/jaeger`, release v1.75.0) from the Go module proxy into a cache
# outside the clone, once; print the binary's path. monitoring.tracing: local runs it
# (ragops/monitoring/tracing.py finds it there). A second run takes a second.
#   RAGOPS_GO_CACHE   the cache root (default /var/cache/ragops-go): GOPATH, GOMODCACHE, GOCACHE, bin/
set -euo pipefail
VERSION=v1.75.0
ROOT="${RAGOPS_GO_CACHE:-/var/cache/ragops-go}"
BIN="$ROOT/bin/jaeger"
STAMP="$ROOT/bin/jaeger.version"
if [[ -x $BIN && $(cat "$STAMP" 2>/dev/null) == "$VERSION" ]]; then
    echo "$BIN"
    exit 0
fi
command -v go >/dev/null || { echo "jaeger-build: go is not installed" >&2; exit 1; }
export GOPATH="$ROOT/gopath" GOMODCACHE="$ROOT/gopath/pkg/mod" GOCACHE="$ROOT/gocache" GOFLAGS=-mod=mod
work="$ROOT/src/jaeger"
mkdir -p "$work" "$ROOT/bin"
cd "$work"
[[ -f go.mod ]] || go mod init ragops.local/jaegertool >&2
started=$(date +%s)
nice -n 10 go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$VERSION" >&2
nice -n 10 go build -trimpath -o "$BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger >&2
mv "$BIN.tmp" "$BIN"
echo "$VERSION" > "$STAMP"
echo "jaeger-build: built $VERSION in $(( $(date +%s) - started ))s" >&2
echo "$BIN"
