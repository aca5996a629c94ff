#!/usr/bin/env bash
#
# The speed benchmarks of docs/performance.md, against the real Kafka broker and Redis of
# scripts/infra.sh (started if they are not running, and then stopped again at the end). Each
# benchmark measures its target and its baseline in the same run; quote ratios, not rates.
#
#   scripts/bench.sh                 the AtomicProjection set (issue 20), 1,000,000 records
#   PROJECTOR_BENCH_RECORDS=200000 scripts/bench.sh      a quick run
#   scripts/bench.sh -count 5        extra go test flags (default -benchtime 1x -count 3)
#
# The peers (Sarama, Kafka Streams) have their own command: scripts/bench-peers.sh.
#
# Environment: PROJECTOR_BENCH_RECORDS, PROJECTOR_BENCH_STREAMS (see BenchmarkAtomicProjection),
# and scripts/infra.sh's PROJECTOR_INFRA_DIR and PROJECTOR_*_PORT variables.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

flags=("$@")
((${#flags[@]})) || flags=(-benchtime 1x -count 3)
go test -run '^$' -bench 'ApplyBatch' -benchtime 100x -count 3 ./redischeckpoint
go test -run '^$' -bench 'AtomicProjection' -timeout 120m "${flags[@]}" ./kafkarunner
