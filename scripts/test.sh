#!/usr/bin/env bash
# The project's test command: vet, then every test, with the race detector
# where it fits the time. Extra arguments go to `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests open a few thousand loopback connections at once.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The browser tests drive Debian's chromium; as root (CI) install it when
# missing, else they skip saying which package they need.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "installing Debian's chromium for the browser tests..." >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# go.mod and go.sum say exactly what the code needs.
go mod tidy -diff
go vet ./...
# Every package twice: under the race detector, then without it, since the
# end-to-end tests' timing differs between the two (about 4 minutes in all
# on 2 cores).
go test -race -count=1 ./... "$@"
go test -count=1 ./... "$@"
