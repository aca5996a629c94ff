#!/usr/bin/env bash
#
# The peers benchmark of docs/performance.md ("Peers: Sarama and Kafka Streams", issue 20): one
# topic, consumed by a raw franz-go poll loop (the baseline), a Sarama consumer group, Projector's
# runner and Kafka Streams (at least once and exactly_once_v2), each counting per stream, in
# interleaved rounds, each run in a new consumer group. It prints a markdown table of medians.
# Not part of scripts/test.sh. Against the real Kafka broker and Redis of scripts/infra.sh
# (started if they are not running, and then stopped again at the end); builds the Kafka Streams
# app (internal/benchpeers/streams) with Maven, then runs the Go driver (internal/benchpeers).
#
#   scripts/bench-peers.sh                       1,000,000 records × 200 B, 12 partitions,
#                                                10,000 streams, 3 rounds
#   scripts/bench-peers.sh -records 100000 -rounds 1          a quick run
#   scripts/bench-peers.sh -stacks raw,sarama,projector       without Java (no Maven build)
#
# Flags go to the driver (go run ./internal/benchpeers -h lists them). Environment: scripts/infra.sh's
# PROJECTOR_INFRA_DIR and PROJECTOR_*_PORT variables; PROJECTOR_CACHE_DIR (where the jar is built).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Java and Maven only when a Kafka Streams stack runs (the last -stacks flag wins, as in the driver).
stacks=streams-
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
	case ${args[i]} in
	-stacks=* | --stacks=*) stacks=${args[i]#*=} ;;
	-stacks | --stacks) stacks=${args[i + 1]:-} ;;
	esac
done
java=
[[ $stacks != *streams-* ]] || java=1

# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

jar=()
if [[ -n $java ]]; then
	build=${PROJECTOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/projector}/benchpeers
	echo "[bench-peers] building the Kafka Streams app (Maven) into $build" >&2
	(cd internal/benchpeers/streams && mvn -q -B -Dstyle.color=never package -Dbenchpeers.buildDir="$build" >&2)
	jar=(-streams-jar "$build/benchpeers-streams.jar")
fi
go run ./internal/benchpeers "${jar[@]}" "$@"
