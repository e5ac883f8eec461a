#!/usr/bin/env bash
# A three-node pushgrid cluster on one Linux host, each node in its own
# network namespace with its own IP address, for partition tests by hand
# and for the tests (netns_e2e_test.go). Needs root and iproute2.
#
#   scripts/netns-cluster.sh up [-- SERVE_ARGS...]   create the network, start n1 n2 n3, wait until ready
#   scripts/netns-cluster.sh down                    stop the nodes, delete the network (idempotent)
#   scripts/netns-cluster.sh partition NODE          cut NODE (n1|n2|n3) off the others and the host
#   scripts/netns-cluster.sh heal NODE               connect NODE again
#   scripts/netns-cluster.sh status                  each node's pid, whether it runs, its link
#   scripts/netns-cluster.sh exec NODE CMD...        run CMD in NODE's namespace
#
# Network: namespaces <P>1 <P>2 <P>3, each with lo and eth0 = SUBNET.N/24,
# eth0 being a veth whose other end, <P>vN, is a port of the bridge <P>br
# on the host. The bridge has SUBNET.254/24, so the host reaches every node
# (ws://SUBNET.N:8000/ws, nats://TOKEN@SUBNET.N:4222); it is tied to no
# host interface, and there is no default route, NAT or forwarding: the
# addresses go nowhere else. A partition sets <P>vN down.
#
# Node N runs, in its namespace, with its log in STATE/nN.log:
#   pushgrid serve --node nN --listen SUBNET.N:8000 --nats-listen SUBNET.N:4222
#     --cluster-listen SUBNET.N:6222 --seed nats://SUBNET.1:6222
#     --admin-listen 127.0.0.1:6003 --history-dir STATE/nN --pid-file STATE/nN.pid SERVE_ARGS...
# (the admin page is on the namespace's own loopback:
# `scripts/netns-cluster.sh exec n1 curl -s 127.0.0.1:6003/api/nodes`).
# Every node is seeded with n1 only (n2 and n3 learn of each other from
# it); add the others' route addresses (`up -- --seed
# nats://SUBNET.2:6222 --seed nats://SUBNET.3:6222`) to seed every node
# with every peer, as the README advises for production.
#
# Environment:
#   PUSHGRID_NETNS_PREFIX     P, 1 to 13 of A-Z a-z 0-9 _ - (default pgns)
#   PUSHGRID_NETNS_SUBNET     the first three bytes of the /24 (default 10.77.0)
#   PUSHGRID_NETNS_STATE      pid files, logs, stores (default /tmp/pushgrid-netns-P)
#   PUSHGRID_BIN              the pushgrid binary (default: go build into STATE)
#   PUSHGRID_NETNS_TIMEOUT    seconds up waits for each node's /readyz (default 30)
#   PUSHGRID_NETNS_STOP_WAIT  seconds down waits after SIGTERM before SIGKILL (default 10)
#   PUSHGRID_CLUSTER_SECRET   the routes' secret; PUSHGRID_NATS_TOKEN the NATS
#                             client port's token: both are required beyond
#                             loopback, and made up (STATE/cluster-secret,
#                             STATE/nats-token) when not set
set -euo pipefail

prog=${0##*/}

usage() {
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
	echo "Network, node flags and environment variables: the comments at the top of $0." >&2
	exit 2
}

die() {
	echo "$prog: $*" >&2
	exit 1
}

log() { echo "$prog: $*" >&2; }

P=${PUSHGRID_NETNS_PREFIX:-pgns}
SUBNET=${PUSHGRID_NETNS_SUBNET:-10.77.0}
STATE=${PUSHGRID_NETNS_STATE:-/tmp/pushgrid-netns-$P}
TIMEOUT=${PUSHGRID_NETNS_TIMEOUT:-30}
STOP_WAIT=${PUSHGRID_NETNS_STOP_WAIT:-10}
BR=${P}br
NODES=(1 2 3)
NETNS_DIR=/var/run/netns

# Interface names are at most 15 bytes: the prefix plus two.
[[ $P =~ ^[A-Za-z0-9_-]{1,13}$ ]] || die "PUSHGRID_NETNS_PREFIX $P: want 1 to 13 of A-Z a-z 0-9 _ -"
[[ $SUBNET =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] ||
	die "PUSHGRID_NETNS_SUBNET $SUBNET: want the first three bytes of a /24, such as 10.77.0"
for b in "${BASH_REMATCH[@]:1}"; do
	((10#$b <= 255)) || die "PUSHGRID_NETNS_SUBNET $SUBNET: $b is not a byte"
done
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "PUSHGRID_NETNS_TIMEOUT $TIMEOUT: want whole seconds"
[[ $STOP_WAIT =~ ^[0-9]+$ ]] || die "PUSHGRID_NETNS_STOP_WAIT $STOP_WAIT: want whole seconds"

ns_of() { echo "$P$1"; }       # namespace of node N
veth_of() { echo "${P}v$1"; }  # host end of node N's veth
ip_of() { echo "$SUBNET.$1"; } # node N's address

# node_index NODE: 1, 2 or 3 for n1, n2, n3.
node_index() {
	case ${1:-} in
	n1 | n2 | n3) echo "${1#n}" ;;
	*) die "node ${1:-(none)}: want n1, n2 or n3" ;;
	esac
}

need_root() {
	((EUID == 0)) || die "$1 needs root (network namespaces, links)"
	command -v ip >/dev/null 2>&1 || die "no ip command: install iproute2"
	ip netns list >/dev/null 2>&1 || die "ip netns does not work here: $(ip netns list 2>&1 | head -n 1)"
}

ns_exists() { [[ -e $NETNS_DIR/$1 ]]; }
link_exists() { ip link show dev "$1" >/dev/null 2>&1; }

# alive PID: the process runs (a zombie does not count).
alive() {
	[[ ${1:-} =~ ^[0-9]+$ ]] || return 1
	kill -0 "$1" 2>/dev/null || return 1
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

read_pid() { tr -d "[:space:]" 2>/dev/null <"$1" || true; }

# pids_of N: node N's processes: the one its pid file names (it may have
# restarted in place) and the one up started.
pids_of() {
	local p
	for p in "$(read_pid "$STATE/n$1.pid")" "$(read_pid "$STATE/n$1.launch")"; do
		if alive "$p"; then echo "$p"; fi
	done | sort -u
}

# http_status HOST PORT PATH: the status code of GET PATH, or nothing.
http_status() {
	timeout 3 bash -c '
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		printf "GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n" "$3" "$1" "$2" >&3
		IFS=" " read -r _ status _ <&3 && echo "$status"
	' http_status "$1" "$2" "$3" 2>/dev/null || true
}

tail_log() {
	echo "--- last lines of $STATE/n$1.log ---" >&2
	tail -n "${2:-40}" "$STATE/n$1.log" >&2 2>/dev/null || echo "(no log)" >&2
}

# secret NAME FILE: the environment's NAME, else FILE's, else a new one kept in FILE.
secret() {
	local name=$1 file=$2
	if [[ -n ${!name:-} ]]; then
		echo "${!name}"
	elif [[ -s $file ]]; then
		cat "$file"
	else
		# 32 hex digits; od reads exactly 16 bytes (no pipe closed early).
		(umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$file")
		cat "$file"
	fi
}

cmd_up() {
	need_root up
	local tool
	for tool in setsid timeout od; do
		command -v "$tool" >/dev/null 2>&1 || die "up needs $tool (util-linux, coreutils)"
	done
	if [[ ${1:-} == -- ]]; then
		shift
	elif [[ $# -gt 0 ]]; then
		die "up: unexpected $1 (serve arguments go after --)"
	fi
	local extra=("$@") i ns veth
	for i in "${NODES[@]}"; do
		ns_exists "$(ns_of "$i")" && die "namespace $(ns_of "$i") exists: run '$prog down' first (same PUSHGRID_NETNS_PREFIX)"
		link_exists "$(veth_of "$i")" && die "link $(veth_of "$i") exists: run '$prog down' first"
	done
	link_exists "$BR" && die "bridge $BR exists: run '$prog down' first"
	if ip -4 -o addr show | grep -qF " $SUBNET." || ip -4 route show | grep -q "^${SUBNET//./\\.}\."; then
		die "the host already has an address or a route in $SUBNET.0/24: pick another PUSHGRID_NETNS_SUBNET"
	fi
	mkdir -p "$STATE"

	local bin=${PUSHGRID_BIN:-}
	if [[ -z $bin ]]; then
		bin=$STATE/pushgrid
		log "building $bin"
		(cd "$(dirname "$0")/.." && go build -o "$bin" .) || die "go build failed"
	fi
	[[ -x $bin ]] || die "PUSHGRID_BIN $bin is not an executable file"
	local cluster_secret nats_token
	cluster_secret=$(secret PUSHGRID_CLUSTER_SECRET "$STATE/cluster-secret")
	nats_token=$(secret PUSHGRID_NATS_TOKEN "$STATE/nats-token")

	trap 'log "up failed; what exists is left for inspection: $prog down removes it"' ERR
	# The bridge, with a fixed address: its own, not its lowest port's.
	ip link add name "$BR" type bridge
	local a b c
	IFS=. read -r a b c <<<"$SUBNET"
	ip link set dev "$BR" address "$(printf '02:77:%02x:%02x:%02x:fe' "$((10#$a))" "$((10#$b))" "$((10#$c))")"
	ip addr add "$(ip_of 254)/24" dev "$BR"
	ip link set dev "$BR" up
	for i in "${NODES[@]}"; do
		ns=$(ns_of "$i") veth=$(veth_of "$i")
		ip netns add "$ns"
		ip -n "$ns" link set dev lo up
		ip link add name "$veth" type veth peer name "${P}p$i"
		ip link set dev "${P}p$i" netns "$ns"
		ip -n "$ns" link set dev "${P}p$i" name eth0
		ip -n "$ns" addr add "$(ip_of "$i")/24" dev eth0
		ip -n "$ns" link set dev eth0 up
		ip link set dev "$veth" master "$BR"
		ip link set dev "$veth" up
	done
	trap - ERR

	for i in "${NODES[@]}"; do
		local addr
		addr=$(ip_of "$i")
		rm -f "$STATE/n$i.pid" "$STATE/n$i.launch"
		mkdir -p "$STATE/n$i"
		# setsid: a session of its own, so that no terminal's hangup
		# reaches it (SIGHUP is pushgrid's in-place restart).
		PUSHGRID_CLUSTER_SECRET=$cluster_secret PUSHGRID_NATS_TOKEN=$nats_token \
			ip netns exec "$(ns_of "$i")" setsid "$bin" serve --node "n$i" \
			--listen "$addr:8000" --nats-listen "$addr:4222" --cluster-listen "$addr:6222" \
			--seed "nats://$(ip_of 1):6222" --admin-listen 127.0.0.1:6003 \
			--history-dir "$STATE/n$i" --pid-file "$STATE/n$i.pid" "${extra[@]}" \
			</dev/null >"$STATE/n$i.log" 2>&1 &
		echo $! >"$STATE/n$i.launch"
	done

	local deadline=$((SECONDS + TIMEOUT))
	for i in "${NODES[@]}"; do
		until [[ $(http_status "$(ip_of "$i")" 8000 /readyz) == 200 ]]; do
			if [[ -z $(pids_of "$i") ]]; then
				tail_log "$i"
				die "n$i exited before it was ready (log: $STATE/n$i.log); '$prog down' cleans up"
			fi
			if ((SECONDS >= deadline)); then
				tail_log "$i"
				die "n$i not ready (GET http://$(ip_of "$i"):8000/readyz) within ${TIMEOUT}s; '$prog down' cleans up"
			fi
			sleep 0.2
		done
		log "n$i ready: ws://$(ip_of "$i"):8000/ws nats://$(ip_of "$i"):4222 (pid $(read_pid "$STATE/n$i.pid"))"
	done
	log "up: state and logs in $STATE; NATS token: \$PUSHGRID_NATS_TOKEN or $STATE/nats-token"
}

cmd_down() {
	need_root down
	local i pids=() p deadline ns
	for i in "${NODES[@]}"; do
		while read -r p; do pids+=("$p"); done < <(pids_of "$i")
		ns=$(ns_of "$i")
		# Whatever else runs in the namespace (a successor of an
		# in-place restart, a command of exec).
		if ns_exists "$ns"; then
			while read -r p; do
				if alive "$p"; then pids+=("$p"); fi
			done < <(ip netns pids "$ns" 2>/dev/null || true)
		fi
	done
	if ((${#pids[@]} > 0)); then
		mapfile -t pids < <(printf '%s\n' "${pids[@]}" | sort -u)
		log "stopping ${pids[*]}"
		kill -TERM "${pids[@]}" 2>/dev/null || true
		deadline=$((SECONDS + STOP_WAIT))
		for p in "${pids[@]}"; do
			while alive "$p" && ((SECONDS < deadline)); do sleep 0.1; done
		done
		for p in "${pids[@]}"; do
			if alive "$p"; then
				log "$p still runs after ${STOP_WAIT}s: SIGKILL"
				kill -KILL "$p" 2>/dev/null || true
			fi
		done
	fi
	for i in "${NODES[@]}"; do
		ns=$(ns_of "$i")
		if link_exists "$(veth_of "$i")"; then ip link delete dev "$(veth_of "$i")"; fi
		if link_exists "${P}p$i"; then ip link delete dev "${P}p$i"; fi # moved nowhere yet
		if ns_exists "$ns"; then ip netns delete "$ns"; fi
		rm -f "$STATE/n$i.pid" "$STATE/n$i.launch"
	done
	if link_exists "$BR"; then ip link delete dev "$BR"; fi
	log "down: prefix $P removed (logs stay in $STATE)"
}

cmd_link() {
	need_root "$1"
	local i veth
	i=$(node_index "${2:-}")
	[[ $# -eq 2 ]] || die "$1: want exactly one node"
	veth=$(veth_of "$i")
	link_exists "$veth" || die "$1 $2: no link $veth (is the cluster up, with PUSHGRID_NETNS_PREFIX=$P?)"
	if [[ $1 == partition ]]; then
		ip link set dev "$veth" down
		log "$2 partitioned ($veth down)"
	else
		ip link set dev "$veth" up
		log "$2 healed ($veth up)"
	fi
}

cmd_status() {
	local i pid state link
	for i in "${NODES[@]}"; do
		pid=$(read_pid "$STATE/n$i.pid")
		[[ -n $pid ]] || pid=$(read_pid "$STATE/n$i.launch")
		state=dead
		alive "$pid" && state=alive
		link=absent
		if link_exists "$(veth_of "$i")"; then
			if ip link show dev "$(veth_of "$i")" | head -n 1 | grep -q '[<,]UP[,>]'; then link=up; else link=down; fi
		fi
		printf 'n%s pid %s %s link %s addr %s ns %s\n' "$i" "${pid:--}" "$state" "$link" "$(ip_of "$i")" "$(ns_of "$i")"
	done
}

cmd_exec() {
	need_root exec
	local i
	i=$(node_index "${1:-}")
	shift
	[[ $# -gt 0 ]] || die "exec: want a command after the node"
	ns_exists "$(ns_of "$i")" || die "exec: no namespace $(ns_of "$i") (is the cluster up?)"
	exec ip netns exec "$(ns_of "$i")" "$@"
}

[[ $# -gt 0 ]] || usage
cmd=$1
shift
case $cmd in
up) cmd_up "$@" ;;
down)
	[[ $# -eq 0 ]] || die "down takes no arguments"
	cmd_down
	;;
partition | heal) cmd_link "$cmd" "$@" ;;
status)
	[[ $# -eq 0 ]] || die "status takes no arguments"
	cmd_status
	;;
exec) cmd_exec "$@" ;;
-h | --help | help) usage ;;
*)
	echo "$prog: unknown command $cmd" >&2
	usage
	;;
esac
