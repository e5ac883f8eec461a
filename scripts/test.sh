#!/usr/bin/env bash
# The project's test command: vet, then every test, with the race detector
# where it fits the time. Extra arguments go to `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests open a few thousand loopback connections at once.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# go.mod and go.sum say exactly what the code needs.
go mod tidy -diff
go vet ./...
# Every package twice: under the race detector, then without it, since the
# end-to-end tests' timing differs between the two (about 4 minutes in all
# on 2 cores).
go test -race -count=1 ./... "$@"
go test -count=1 ./... "$@"
