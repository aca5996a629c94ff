#!/usr/bin/env bash
#
# The project's test command. Installs what is missing, starts a real single-node Kafka broker,
# a real Redis and a Jaeger (OTLP in, query API out) on free 127.0.0.1 ports with data in a
# temporary directory, plus the HA topology of scripts/ha.sh (3-node KRaft Kafka, Redis master +
# replica + 3 Sentinels, 3-master Redis Cluster; PROJECTOR_HA_* variables), runs the Go tests
# against them with PROJECTOR_REQUIRE_REAL=1, and stops the servers again, also when the tests
# fail or the run is interrupted. Without arguments it first checks gofmt, go vet,
# staticcheck and go mod tidy, and the Helm chart (tools/charttest). The exit code is the first failing step's.
#
# Usage: scripts/test.sh [go test arguments]   (default: ./...)
#   scripts/test.sh -run TestKafka ./internal/testenv/
#   PROJECTOR_TEST_FLAGS="-v" scripts/test.sh
# Environment:
#   PROJECTOR_TEST_FLAGS  extra go test flags, added after the defaults
#   PROJECTOR_TEST_ARTIFACTS  where tests keep their artifacts (go test -artifacts; default
#                         ${TMPDIR:-/tmp}/projector-test-artifacts)
#   PROJECTOR_TEST_RACE=0 run without -race
#   PROJECTOR_NO_HA=1     do not start the HA topology (its tests then skip, or fail under CI=true)
#   see scripts/lib/infra.sh and scripts/lib/ha.sh for the server knobs (versions, ports,
#   heaps, timeouts)
set -euo pipefail

# shellcheck source=scripts/lib/infra.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/infra.sh"
cd "$INFRA_ROOT"

INFRA_STATE=$(mktemp -d "${TMPDIR:-/tmp}/projector-test.XXXXXX")
# Away from scripts/infra.sh's defaults so a by-hand environment can keep running.
INFRA_KAFKA_PORT_DEFAULT=29092
INFRA_REDIS_PORT_DEFAULT=26379
INFRA_JAEGER_PORT_DEFAULT=24317

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[[ ! -d $INFRA_STATE/ha ]] || PROJECTOR_HA_DIR=$INFRA_STATE/ha scripts/ha.sh down || true
	infra_down
	exit "$rc"
}
trap cleanup EXIT
trap 'infra_log interrupted; exit 130' INT
trap 'infra_log terminated; exit 143' TERM

# The whole suite also checks the code: gofmt, go vet, staticcheck (pinned in tools/go.mod) and that
# go.mod and go.sum are tidy (a direct dependency marked indirect, or one no longer used, fails).
if (($# == 0)); then
	infra_log "gofmt, go vet, staticcheck, go mod tidy"
	if ! go mod tidy -diff; then
		infra_log "go.mod/go.sum are not tidy: run go mod tidy (the diff is above)"
		exit 1
	fi
	mapfile -t gofiles < <(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')
	unformatted=$(gofmt -l "${gofiles[@]}")
	if [[ -n $unformatted ]]; then
		infra_log "gofmt would change:"
		printf '%s\n' "$unformatted" >&2
		exit 1
	fi
	go vet ./...
	go -C tools build -o "$INFRA_STATE/staticcheck" honnef.co/go/tools/cmd/staticcheck
	"$INFRA_STATE/staticcheck" ./...

	# The Helm chart, offline: for the defaults and each deploy/helm/projector/ci/*-values.yaml a
	# render decoded strictly with client-go's types and template unit tests (tools/charttest),
	# then `helm lint --strict` with the Helm CLI. Both live in the tools module (Helm stays out of
	# go.mod), which ./... does not reach.
	infra_log "helm chart: lint, render and validate (tools/charttest)"
	go -C tools vet ./...
	(cd tools && "$INFRA_STATE/staticcheck" ./...)
	go -C tools test -count=1 ./...
	go -C tools build -o "$INFRA_STATE/helm" helm.sh/helm/v3/cmd/helm
	# The chart's own values.yaml as -f is the defaults.
	for values in deploy/helm/projector/values.yaml deploy/helm/projector/ci/*-values.yaml; do
		"$INFRA_STATE/helm" lint --strict --quiet deploy/helm/projector -f "$values"
	done
fi

start=$SECONDS
infra_up
infra_log "servers ready after $((SECONDS - start))s; logs: $INFRA_STATE/kafka.log $INFRA_STATE/redis.log $INFRA_STATE/jaeger.log"

# shellcheck disable=SC1091
source "$INFRA_STATE/env"

# The HA topology, on ports away from scripts/ha.sh's defaults (base 21000).
# It needs the native Kafka and Redis (no testcontainers path): without them its tests fail under
# CI=true and skip otherwise.
if [[ ${PROJECTOR_NO_HA:-} != 1 && ${INFRA_KAFKA_MODE:-} == native && ${INFRA_REDIS_MODE:-} == native ]]; then
	start=$SECONDS
	PROJECTOR_HA_DIR=$INFRA_STATE/ha PROJECTOR_HA_PORT_BASE=${PROJECTOR_HA_PORT_BASE:-23000} scripts/ha.sh up >/dev/null
	infra_log "HA topology ready after $((SECONDS - start))s; logs: $INFRA_STATE/ha/*.log"
	# shellcheck disable=SC1091
	source "$INFRA_STATE/ha/env"
else
	infra_log "the HA topology is not started (PROJECTOR_NO_HA=1, or Kafka/Redis not native): its tests skip, or fail under CI=true"
	export PROJECTOR_NO_HA=1
fi

infra_browser

# Test artifacts (the browser test's screenshot of a failure) outlive the run.
artifacts=${PROJECTOR_TEST_ARTIFACTS:-${TMPDIR:-/tmp}/projector-test-artifacts}
mkdir -p "$artifacts"
flags=(-count=1 -timeout 30m -artifacts -outputdir "$artifacts")
[[ ${PROJECTOR_TEST_RACE:-1} != 0 ]] && flags=(-race "${flags[@]}")
if [[ -n ${PROJECTOR_TEST_FLAGS:-} ]]; then
	read -r -a extra <<<"$PROJECTOR_TEST_FLAGS"
	flags+=("${extra[@]}")
fi
(($#)) || set -- ./...

infra_log "go test ${flags[*]} $*"
set +e
go test "${flags[@]}" "$@"
rc=$?
set -e
if [[ -n $(find "$artifacts" -type f -print -quit 2>/dev/null) ]]; then
	infra_log "test artifacts: $artifacts"
fi
exit "$rc"
