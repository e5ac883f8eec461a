#!/usr/bin/env bash
# Side-by-side benchmark of pushgrid and the floor (../shared/bench/floor):
# each scenario runs floor then pushgrid (A B), in fresh processes, for
# ROUNDS rounds, and one table of medians and ratios is printed at the end.
#
#   scripts/bench.sh                 # 3 rounds, every scenario
#   ROUNDS=5 DURATION=10s scripts/bench.sh closed1k rate200
#
# Scenarios: closed1k closed5k rate200 idle10k. Only loopback is used.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
FLOOR_SRC=${FLOOR_SRC:-../shared/bench/floor}
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(closed1k closed5k rate200 idle10k)

ulimit -n 20000
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "building pushgrid and the floor..." >&2
go build -o "$work/pushgrid" .
(cd "$FLOOR_SRC" && go build -o "$work/floor" .)

wait_port() {
	for _ in $(seq 200); do
		(echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "port $1 never opened" >&2
	return 1
}

# start_server NAME [PUSHGRID FLAGS...]: starts it in the background, sets
# PID, WS and NATS.
start_server() {
	case $1 in
	floor)
		"$work/floor" -addr 127.0.0.1:8100 -nats-port 4300 >"$work/floor.log" 2>&1 &
		PID=$! WS=ws://127.0.0.1:8100/ws NATS=nats://127.0.0.1:4300
		wait_port 8100
		wait_port 4300
		;;
	pushgrid)
		"$work/pushgrid" serve --node bench --listen 127.0.0.1:8200 --nats-listen 127.0.0.1:4400 \
			--admin-listen "" --log-level warn --drain 0s "${@:2}" >"$work/pushgrid.log" 2>&1 &
		PID=$! WS=ws://127.0.0.1:8200/ws NATS=nats://127.0.0.1:4400
		wait_port 8200
		wait_port 4400
		;;
	esac
}

stop_server() {
	kill "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
}

# server_flags NAME -> extra pushgrid flags. idle10k: the floor sends no
# join/leave control frames, and in one channel of n members PROTOCOL.md's
# control frames cost n*n/2 frames for n joins (50 million for 10,000), so
# pushgrid is measured with them limited to channels of 100 members.
server_flags() {
	case $1 in
	idle10k) echo "--presence-limit 100" ;;
	esac
}

# scenario NAME -> the bench flags. closed5k's connect phase is pushgrid
# announcing every join to every member (12.5 million control frames for
# 5,000 joins), about two minutes here: it gets a longer bound than the
# default. idle10k gives the load generator two threads: with one, the generator's own CPU per connect (about as much as
# either server's) makes it the bottleneck, and connect+join time measures
# the generator rather than the server.
flags() {
	case $1 in
	closed1k) echo "--subs 1000 --rate 0 --duration $DURATION" ;;
	closed5k) echo "--subs 5000 --rate 0 --duration $DURATION --timeout 300s" ;;
	rate200) echo "--subs 1000 --rate 200 --duration $DURATION" ;;
	idle10k) echo "--subs 10000 --rate= --hold 5s --dialers 32 --procs 2" ;;
	*)
		echo "unknown scenario $1" >&2
		exit 2
		;;
	esac
}

# summarize FILE: one line of a run's headline figures, so the spread of
# the rounds is visible next to the medians.
summarize() {
	python3 - "$1" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
parts = [f"connect+join {r['connect_seconds']:.2f}s"]
if r.get("connect_server_cpu_seconds") and r.get("connected"):
    n = r["connected"]
    parts.append(f"CPU per connect: server {r['connect_server_cpu_seconds'] / n * 1e6:.0f} us, "
                 f"load generator {r['connect_client_cpu_seconds'] / n * 1e6:.0f} us")
if r.get("rss_per_conn"):
    parts.append(f"{r['rss_per_conn']:,.0f} B/conn")
for s in r.get("steps") or []:
    parts.append(f"{s['deliveries_per_sec']:,.0f} deliveries/s, p99 {s['p99_ms']} ms, "
                 f"lost {s['lost']}, disconnects {s['disconnects']}")
print("    " + "; ".join(parts))
PY
}

for round in $(seq "$ROUNDS"); do
	for sc in "${SCENARIOS[@]}"; do
		for sys in floor pushgrid; do
			echo "round $round/$ROUNDS: $sc on $sys" >&2
			# shellcheck disable=SC2046
			start_server "$sys" $(server_flags "$sc")
			# shellcheck disable=SC2046
			"$work/pushgrid" bench --url "$WS" --nats "$NATS" --server-pid "$PID" --size 64 --json \
				$(flags "$sc") >"$work/$sc.$sys.$round.json" || echo "bench failed: $sc $sys round $round" >&2
			stop_server
			summarize "$work/$sc.$sys.$round.json" >&2
		done
	done
done

python3 - "$work" "$ROUNDS" "${SCENARIOS[@]}" <<'PY'
import json, os, statistics, sys
work, rounds, scenarios = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def load(sc, sys_):
    out = []
    for r in range(1, rounds + 1):
        p = os.path.join(work, f"{sc}.{sys_}.{r}.json")
        if os.path.exists(p) and os.path.getsize(p) > 0:
            out.append(json.load(open(p)))
    return out

def value(get, r):
    # A run that failed (its connect phase timed out, say) has no steps.
    try:
        return get(r)
    except (KeyError, IndexError, TypeError):
        return None

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

metrics = {
    "closed1k": [("deliveries/s", lambda r: r["steps"][0]["deliveries_per_sec"], "higher"),
                 ("deliveries per server CPU-s", lambda r: r["steps"][0].get("deliveries_per_server_cpu_second"), "higher")],
    "closed5k": [("deliveries/s", lambda r: r["steps"][0]["deliveries_per_sec"], "higher")],
    "rate200": [("p99 ms", lambda r: r["steps"][0]["p99_ms"], "lower"),
                ("p50 ms", lambda r: r["steps"][0]["p50_ms"], "lower"),
                ("loss", lambda r: r["steps"][0]["lost"], "lower"),
                ("disconnects", lambda r: r["steps"][0]["disconnects"], "lower")],
    "idle10k": [("RSS bytes per joined conn", lambda r: r.get("rss_per_conn"), "lower"),
                ("connect+join s", lambda r: r["connect_seconds"], "lower")],
}
print(f"\nmedians of {rounds} interleaved rounds (floor, pushgrid), 64-byte payloads, one channel")
print(f"| scenario | metric | floor | pushgrid | pushgrid / floor |")
print(f"|---|---|---|---|---|")
for sc in scenarios:
    f, p = load(sc, "floor"), load(sc, "pushgrid")
    for name, get, _ in metrics[sc]:
        fv = med([value(get, r) for r in f]) if f else None
        pv = med([value(get, r) for r in p]) if p else None
        ratio = f"{pv / fv:.2f}x" if fv and pv is not None else "-"
        fmt = lambda v: "-" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}")
        print(f"| {sc} | {name} | {fmt(fv)} | {fmt(pv)} | {ratio} |")
PY
