#!/usr/bin/env bash
# The project's test command: vet, then every test, with the race detector
# where it fits the time. Extra arguments go to `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests open a few thousand loopback connections at once.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

go vet ./...
# The packages under the race detector; the whole tree,
# end-to-end tests included, without it (they are timing-heavy on 2 cores).
go test -race -count=1 ./session/... ./broker/... ./sticky/... ./gateway/... ./bench/... "$@"
go test -count=1 ./... "$@"
