#!/usr/bin/env bash
#
# Starts, stops and breaks the production-like topologies of scripts/lib/ha.sh on 127.0.0.1: a
# 3-node KRaft Kafka cluster (kafka-1..3), a Redis master and replica (redis-1, redis-2) with
# three Sentinels (sentinel-1..3, master name "projector"), and a 3-master Redis Cluster
# (cluster-1..3), and the same Redis set TLS-only with ACL users (tls-redis-1..2, tls-sentinel-1..3
# with master name "projector-tls", tls-cluster-1..3). scripts/test.sh runs it too (PROJECTOR_NO_HA=1 skips it); the fault suite
# calls kill/start/stop/pid through PROJECTOR_HA_CTL.
#
#   scripts/ha.sh up          start everything (if not running; servers of a running topology
#                             that are down are started again) and print the export lines
#   eval "$(scripts/ha.sh env)"
#   scripts/ha.sh status      pid, port and log of every server (exit 1 if one is down)
#   scripts/ha.sh down        stop everything (TERM, KILL after 15s) and remove the data; logs kept
#   scripts/ha.sh kill NAME   SIGKILL one server          NAME: kafka-1..3, redis-1..2,
#   scripts/ha.sh stop NAME   SIGTERM it and wait               sentinel-1..3, cluster-1..3,
#                                                               tls-redis-1..2, tls-sentinel-1..3,
#                                                               tls-cluster-1..3
#   scripts/ha.sh start NAME  start it again with its config and data; returns once it listens
#   scripts/ha.sh pid NAME    print its pid (exit 1 if it is not running)
#
# kill, stop and start print nothing on stdout. The export lines (also in $PROJECTOR_HA_DIR/env):
#   PROJECTOR_HA_KAFKA_SEEDS=127.0.0.1:a,127.0.0.1:b,127.0.0.1:c
#   PROJECTOR_HA_KAFKA_NODES=1=127.0.0.1:a,2=127.0.0.1:b,3=127.0.0.1:c   (node id = broker id)
#   PROJECTOR_HA_REDIS_SENTINELS=127.0.0.1:x,127.0.0.1:y,127.0.0.1:z
#   PROJECTOR_HA_REDIS_MASTER_NAME=projector
#   PROJECTOR_HA_REDIS_NODES=1=127.0.0.1:m,2=127.0.0.1:r                 (redis-1, redis-2)
#   PROJECTOR_HA_REDIS_CLUSTER=1=127.0.0.1:c1,2=127.0.0.1:c2,3=127.0.0.1:c3
#   The TLS set (TLS-only ports; certificates of one throw-away CA; ACL users):
#   PROJECTOR_HA_REDIS_TLS_ADDR=127.0.0.1:t                              (tls-redis-1, the master)
#   PROJECTOR_HA_REDIS_TLS_NODES=1=127.0.0.1:t,2=127.0.0.1:u             (tls-redis-1, tls-redis-2)
#   PROJECTOR_HA_REDIS_TLS_SENTINELS=127.0.0.1:x,...   PROJECTOR_HA_REDIS_TLS_MASTER_NAME=projector-tls
#   PROJECTOR_HA_REDIS_TLS_CLUSTER=1=127.0.0.1:c1,...   (tls-auth-clients yes: needs the client cert)
#   PROJECTOR_HA_REDIS_TLS_CA_FILE, _TLS_CERT_FILE, _TLS_KEY_FILE        (CA, client cert and key)
#   PROJECTOR_HA_REDIS_ACL_USER=projector   PROJECTOR_HA_REDIS_ACL_PASSWORD_FILE=<file>
#                                            (the data servers' user: master, replica, cluster)
#   PROJECTOR_HA_REDIS_SENTINEL_ACL_USER=projector-sentinel
#   PROJECTOR_HA_REDIS_SENTINEL_ACL_PASSWORD_FILE=<file>   (the TLS Sentinels' user)
#   Passwords are never printed, only the paths of their files (mode 0600).
#   PROJECTOR_HA_CTL=<this script>   PROJECTOR_HA_DIR=<state directory>
#
# Knobs: PROJECTOR_HA_DIR (state, default ${TMPDIR:-/tmp}/projector-ha), PROJECTOR_HA_KAFKA_HEAP
# (384m), PROJECTOR_KAFKA_VERSION, PROJECTOR_HA_START_TIMEOUT (180 s), PROJECTOR_HA_PORT_BASE
# (21000); see scripts/lib/ha.sh.
set -euo pipefail

# shellcheck source=scripts/lib/infra.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/infra.sh"
# shellcheck source=scripts/lib/ha.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/ha.sh"

PROJECTOR_HA_DIR=${PROJECTOR_HA_DIR:-${TMPDIR:-/tmp}/projector-ha}
ha_state_init

usage() {
	echo "usage: $0 up|down|env|status|kill NAME|start NAME|stop NAME|pid NAME" >&2
	echo "       NAME: ${HA_SERVERS[*]}" >&2
	exit 2
}

# name_arg: the NAME argument of kill/start/stop/pid, checked.
name_arg() {
	[[ $# == 1 ]] || usage
	ha_known "$1" || {
		echo "$0: unknown server '$1'" >&2
		usage
	}
}

cmd=${1:-}
(($#)) && shift
case $cmd in
up)
	running=()
	# A topology of an older version of this script (no TLS set) is started afresh.
	if [[ -s $HA_STATE/env && -f $HA_STATE/ports ]] && grep -q '^HA_PORT\[tls-redis-1\]=' "$HA_STATE/ports"; then
		for s in "${HA_SERVERS[@]}"; do ha_alive "$s" && running+=("$s"); done
	fi
	if ((${#running[@]})); then
		ha_load_ports
		for s in "${HA_SERVERS[@]}"; do
			ha_alive "$s" || {
				ha_log "$s is down; starting it"
				ha_start "$s"
			}
		done
		ha_log "already running (state in $HA_STATE)"
	else
		ha_down
		# A failed start must not leave half a topology behind.
		trap 'rc=$?; ((rc == 0)) || ha_down; exit $rc' EXIT
		ha_up
		trap - EXIT
		ha_log "logs: $HA_STATE/*.log; stop with: scripts/ha.sh down"
	fi
	cat "$HA_STATE/env"
	;;
down)
	ha_down
	ha_log "stopped (logs kept in $HA_STATE)"
	;;
env)
	[[ -s $HA_STATE/env ]] || ha_die "not running; start with: scripts/ha.sh up"
	cat "$HA_STATE/env"
	;;
status)
	ha_load_ports
	rc=0
	for s in "${HA_SERVERS[@]}"; do
		tls=''
		[[ $s == tls-* ]] && tls=' (TLS only)'
		if ha_alive "$s"; then
			echo "$s: running, pid $(<"$HA_STATE/$s.pid"), 127.0.0.1:${HA_PORT[$s]}${tls}, log $HA_STATE/$s.log"
		else
			echo "$s: not running (127.0.0.1:${HA_PORT[$s]}${tls}, log $HA_STATE/$s.log)"
			rc=1
		fi
	done
	exit "$rc"
	;;
kill)
	name_arg "$@"
	ha_kill "$1"
	;;
stop)
	name_arg "$@"
	ha_stop "$1"
	;;
start)
	name_arg "$@"
	ha_load_ports
	ha_start "$1"
	;;
pid)
	name_arg "$@"
	ha_alive "$1" || ha_die "$1 is not running"
	cat "$HA_STATE/$1.pid"
	;;
*) usage ;;
esac
