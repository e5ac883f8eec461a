#!/usr/bin/env bash
# Rolling in-place restart of a pushgrid cluster, one node at a time.
#
#   scripts/rolling-restart.sh [-t SECONDS] [-s SECONDS] PIDFILE@GATEWAY ...
#
# For each node, in the order given: SIGHUP to the process its pid file
# (pid_file, --pid-file) names, which starts the binary at its path with
# its arguments and hands over to it (README: "Upgrades and restarts");
# then wait until the pid file names a new live process, the old one has
# exited (after gateway.drain) and the gateway answers GET /readyz with
# 200; then -s SECONDS more (default 2), for the node's history replicas
# to catch up, before the next node. GATEWAY is host:port of the node's
# gateway as seen from here. -t bounds each node's restart (default 60).
#
# A node whose restart fails stops the script with an error, leaving the
# other nodes as they are: the old process goes on serving when the new
# one cannot start, and its log says why.
#
# With systemd (ExecReload=kill -HUP $MAINPID), `systemctl reload` does
# the SIGHUP; this script is for hosts where you run the nodes yourself,
# and for the tests.
set -euo pipefail

usage() {
	sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

timeout=60
settle=2
while getopts "t:s:h" opt; do
	case $opt in
	t) timeout=$OPTARG ;;
	s) settle=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -gt 0 ]] || usage
for node in "$@"; do
	[[ $node == *@*:* ]] || { echo "rolling-restart: $node: want PIDFILE@HOST:PORT" >&2; exit 2; }
done

log() { echo "rolling-restart: $(date +%H:%M:%S.%3N) $*" >&2; }

# alive PID: the process runs (a zombie does not count).
alive() {
	kill -0 "$1" 2>/dev/null || return 1
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

# ready HOST:PORT: the gateway answers GET /readyz with 200.
ready() {
	local host=${1%:*} port=${1##*:} status
	{ exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || return 1
	printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
	IFS= read -r -t 2 status <&3 || status=
	exec 3<&- 3>&-
	[[ $status == *" 200 "* ]]
}

pidof_file() { tr -d '[:space:]' <"$1" 2>/dev/null || true; }

for node in "$@"; do
	pidfile=${node%@*} gateway=${node#*@}
	old=$(pidof_file "$pidfile")
	[[ $old =~ ^[0-9]+$ ]] || { log "$pidfile names no process"; exit 1; }
	alive "$old" || { log "$pidfile names $old, which is not running"; exit 1; }
	log "$gateway: SIGHUP to $old"
	kill -HUP "$old"
	deadline=$((SECONDS + timeout))
	new=$old
	until [[ $new != "$old" ]] && alive "$new" && ! alive "$old" && ready "$gateway"; do
		if ((SECONDS >= deadline)); then
			if [[ $new == "$old" ]]; then
				log "$gateway: no new process within ${timeout}s; $old goes on serving (see its log)"
			else
				log "$gateway: not done within ${timeout}s (new $new alive: $(alive "$new" && echo yes || echo no), old $old alive: $(alive "$old" && echo yes || echo no))"
			fi
			exit 1
		fi
		sleep 0.1
		new=$(pidof_file "$pidfile")
	done
	log "$gateway: $new serving, $old gone"
	sleep "$settle"
done
log "done: $# node(s) restarted"
