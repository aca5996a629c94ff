# Sourced by the benchmark commands (scripts/bench.sh, scripts/bench-peers.sh): starts the servers of
# scripts/infra.sh when Kafka or Redis is not running, stops them again on exit (only if it started
# them), and exports their environment. Run from the repository's root.

bench_started=
bench_status=$(scripts/infra.sh status 2>/dev/null || true)
if ! grep -q '^kafka: running' <<<"$bench_status" || ! grep -q '^redis: running' <<<"$bench_status"; then
	scripts/infra.sh up >&2
	bench_started=1
fi
# shellcheck disable=SC2317 # invoked by the EXIT trap
bench_cleanup() {
	local rc=$?
	[[ -z $bench_started ]] || scripts/infra.sh down >&2 || true
	exit "$rc"
}
trap bench_cleanup EXIT INT TERM
eval "$(scripts/infra.sh env)"
