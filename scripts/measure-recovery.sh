#!/usr/bin/env bash
#
# Measures recovery after a SIGKILL (seconds until a killed replica's partitions are processed
# again, per membership setting) and throughput under a SIGKILL every 5 s (as a ratio of the
# no-fault rate in the same run), against the servers of scripts/infra.sh. A measurement, not a
# test: it asserts only that every run ends with every event applied exactly once. It takes
# several minutes (the default-45s and KIP-848 settings wait for 45 s sessions).
#
# Usage: scripts/infra.sh up && eval "$(scripts/infra.sh env)" && scripts/measure-recovery.sh
# Environment:
#   PROJECTOR_MEASURE_ROUNDS    rounds, settings interleaved (default 2)
#   PROJECTOR_MEASURE_SETTINGS  comma-separated: default-45s, session-6s, static-6s, kip848,
#                               kip848-static (recovery: all; throughput: static-6s)
#   PROJECTOR_MEASURE_EVENTS    backlog of the throughput runs (default 300000; 1000000 for the
#                               figures in docs/performance.md)
#   PROJECTOR_MEASURE_ONLY      recovery or throughput: run one of the two
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z ${PROJECTOR_KAFKA_SEEDS:-} || -z ${PROJECTOR_REDIS_ADDR:-} ]]; then
	echo 'measure-recovery: no servers: run scripts/infra.sh up && eval "$(scripts/infra.sh env)" first' >&2
	exit 2
fi
case ${PROJECTOR_MEASURE_ONLY:-} in
recovery) run='^TestMeasureRecoveryAfterSIGKILL$' ;;
throughput) run='^TestMeasureThroughputUnderKills$' ;;
'') run='^TestMeasure(RecoveryAfterSIGKILL|ThroughputUnderKills)$' ;;
*)
	echo "measure-recovery: PROJECTOR_MEASURE_ONLY is recovery or throughput" >&2
	exit 2
	;;
esac
PROJECTOR_MEASURE_RECOVERY=1 exec go test -count=1 -v -timeout 60m -run "$run" ./kafkarunner
