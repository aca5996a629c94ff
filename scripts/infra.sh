#!/usr/bin/env bash
#
# Starts and stops the same Kafka broker, Redis server and Jaeger as scripts/test.sh, for
# working by hand. The servers keep running until `down`.
#
#   scripts/infra.sh up       start them (if not running) and print the export lines (passwords hidden)
#   eval "$(scripts/infra.sh env)"; go test ./...
#   scripts/infra.sh status   show PIDs, ports and log files
#   scripts/infra.sh down     stop them and remove their data (logs are kept)
#
# State (PIDs, logs, data) lives in $PROJECTOR_INFRA_DIR, default ${TMPDIR:-/tmp}/projector-infra.
set -euo pipefail

# shellcheck source=scripts/lib/infra.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/infra.sh"
cd "$INFRA_ROOT"

INFRA_STATE=${PROJECTOR_INFRA_DIR:-${TMPDIR:-/tmp}/projector-infra}
INFRA_KAFKA_PORT_DEFAULT=19092
INFRA_REDIS_PORT_DEFAULT=16379
INFRA_JAEGER_PORT_DEFAULT=14317

kafka_running() { infra_pid_alive "$INFRA_STATE/kafka.pid" "$INFRA_STATE/kafka/server.properties"; }
redis_running() { infra_pid_alive "$INFRA_STATE/redis.pid" redis-server; }
jaeger_running() { infra_pid_alive "$INFRA_STATE/jaeger.pid" "$INFRA_STATE/jaeger/config.yaml"; }

case ${1:-} in
up)
	if [[ -s $INFRA_STATE/env ]] && { kafka_running || redis_running || jaeger_running; }; then
		infra_log "already running (state in $INFRA_STATE)"
	else
		infra_down
		# A failed start must not leave half a environment behind.
		trap 'rc=$?; ((rc == 0)) || infra_down; exit $rc' EXIT
		infra_up
		trap - EXIT
		infra_log "logs: $INFRA_STATE/kafka.log $INFRA_STATE/redis.log $INFRA_STATE/jaeger.log"
		infra_log "stop with: scripts/infra.sh down"
	fi
	# Passwords stay out of terminals and CI logs: eval "$(scripts/infra.sh env)" sets them.
	sed -E 's/^(export [A-Z_]*PASSWORD=).*/\1(hidden: eval "$(scripts\/infra.sh env)")/' "$INFRA_STATE/env"
	;;
down)
	infra_down
	infra_log "stopped (logs kept in $INFRA_STATE)"
	;;
env)
	[[ -s $INFRA_STATE/env ]] || infra_die "not running; start with: scripts/infra.sh up"
	cat "$INFRA_STATE/env"
	# The Java producer of the sources as they are now, which may be newer than the servers.
	if jar=$(infra_java_producer_jar); then echo "export PROJECTOR_JAVA_PRODUCER_JAR=$jar"; fi
	;;
status)
	rc=0
	if kafka_running; then
		echo "kafka: running, pid $(<"$INFRA_STATE/kafka.pid"), $(grep -o '^listeners=.*' "$INFRA_STATE/kafka/server.properties"), log $INFRA_STATE/kafka.log"
	else
		echo "kafka: not running"
		rc=1
	fi
	if redis_running; then
		echo "redis: running, pid $(<"$INFRA_STATE/redis.pid"), $(grep -o 'PROJECTOR_REDIS_ADDR=.*' "$INFRA_STATE/env"), log $INFRA_STATE/redis.log"
	else
		echo "redis: not running"
		rc=1
	fi
	if jaeger_running; then
		echo "jaeger: running, pid $(<"$INFRA_STATE/jaeger.pid"), $(grep -o 'PROJECTOR_JAEGER_QUERY_URL=.*' "$INFRA_STATE/env"), log $INFRA_STATE/jaeger.log"
	elif [[ ${PROJECTOR_NO_JAEGER:-} == 1 ]]; then
		echo "jaeger: not running (PROJECTOR_NO_JAEGER=1)"
	else
		echo "jaeger: not running"
		rc=1
	fi
	exit "$rc"
	;;
*)
	echo "usage: $0 up|down|env|status" >&2
	exit 2
	;;
esac
