# shellcheck shell=bash
#
# Production-like topologies on 127.0.0.1 for the HA and fault tests, next to the single servers
# of scripts/lib/infra.sh (whose helpers this file reuses; it sources infra.sh when needed):
#
#   kafka-1..3     a 3-node KRaft cluster, every node broker+controller (node.id = broker id
#                  = N), a static 3-voter quorum (controller.quorum.voters), PLAINTEXT only,
#                  replication factor 3, min.insync.replicas 2, no unclean leader election,
#                  6 partitions per new topic, no topic auto-creation
#   redis-1, redis-2   a Redis master and its replica (replicaof redis-1), AOF every second
#   sentinel-1..3  three Sentinels monitoring them as master "projector" (quorum 2)
#   cluster-1..3   a Redis Cluster of three masters without replicas
#
# and the same Redis set again, TLS-only (port 0, tls-port) and with ACL users, for the TLS
# and ACL tests (the plaintext servers above keep serving the other tests):
#
#   tls-redis-1, tls-redis-2   master and replica; replication over TLS (tls-replication yes);
#                              tls-auth-clients optional (a client certificate is not required)
#   tls-sentinel-1..3          three Sentinels monitoring them as master "projector-tls" on the
#                              TLS port (quorum 2); Sentinels speak TLS to the servers and to
#                              each other, so they hand out TLS ports; tls-auth-clients no; they
#                              require an ACL user too (not the data servers' one)
#   tls-cluster-1..3           a 3-master Redis Cluster, tls-cluster yes (the bus is TLS as well;
#                              with port 0 CLUSTER SLOTS names the TLS ports); tls-auth-clients
#                              yes: clients must present a certificate of the CA
#
#   Certificates ($HA_STATE/tls, EC P-256, made with openssl, valid 30 days): ca.crt (+ ca.key),
#   server.crt/.key (CN localhost, SAN IP:127.0.0.1 and DNS:localhost; serverAuth and clientAuth,
#   as the servers present it to each other too), client.crt/.key (CN projector, clientAuth).
#   ACL users (random passwords, 0600 files in $HA_STATE/tls; the configs hold only their
#   SHA-256, except masterauth and sentinel auth-pass, which Redis needs in clear):
#     data servers: default off; ha-admin (+@all: this script, replication, the Sentinels);
#                   projector (projector.password): ~* &* +@all -@dangerous plus the few
#                   commands of that category the worker and projectorctl use (see HA_ACL_PROJECTOR)
#     Sentinels:    default off; ha-admin (Sentinel to Sentinel: sentinel sentinel-user);
#                   projector-sentinel (sentinel.password): what a client needs to find the master
#   Nothing prints a password: the env has the paths of the password files.
#
# Every server runs from its own config file in the state directory, so that `ha_start NAME`
# brings a killed server back with its config and data (Sentinel rewrites the Redis and
# Sentinel files after a failover; a restarted server keeps the rewritten role). Ports are chosen
# once by ha_up and kept in $HA_STATE/ports.
#
# State directory layout (HA_STATE):
#   ports            the chosen ports (sourced: HA_PORT[name]=port)
#   env              the export lines (PROJECTOR_HA_*)
#   kafka.jars       the broker's classpath directory; kafka.cluster-id
#   kafkaready       the readiness probe (built from internal/testenv/cmd/kafkaready)
#   log4j2.properties
#   NAME.pid NAME.log   per server (logs are appended to across restarts and kept by ha_down)
#   kafka-N/server.properties kafka-N/data/
#   redis-N/redis.conf, cluster-N/redis.conf (+ nodes.conf, AOF), sentinel-N/sentinel.conf
#   tls-*/ likewise for the TLS set; tls/ its certificates and password files
#
# Knobs (environment):
#   PROJECTOR_HA_DIR            state directory (set by the caller; scripts/ha.sh defaults it)
#   PROJECTOR_HA_KAFKA_HEAP     JVM heap per Kafka node (default 384m)
#   PROJECTOR_KAFKA_VERSION     Kafka release (shared with infra.sh; default there)
#   PROJECTOR_HA_START_TIMEOUT  seconds to wait for the topology, or for one server in
#                               ha_start (default 180: three JVMs on 2 cores boot slowly)
#   PROJECTOR_HA_PORT_BASE      first port of the default ranges (default 21000): Kafka
#                               base+92.. (client and controller port per node), Redis base+379..,
#                               Sentinels base+390.., Cluster base+400.. (bus ports base+410..),
#                               TLS set: master and replica base+420.., Sentinels base+430..,
#                               Cluster base+440.. (bus ports base+450..).
#                               Busy ports are skipped. Everything stays below 32768, out of
#                               Linux's ephemeral range, where an outgoing connection could take
#                               a server's port while it is down.
# Functions and variables are prefixed ha_ / HA_.

if ! declare -F infra_log >/dev/null; then
	# shellcheck source=scripts/lib/infra.sh
	source "$(dirname "${BASH_SOURCE[0]}")/infra.sh"
fi

HA_KAFKA=(kafka-1 kafka-2 kafka-3)
HA_REDIS=(redis-1 redis-2)
HA_SENTINELS=(sentinel-1 sentinel-2 sentinel-3)
HA_CLUSTER=(cluster-1 cluster-2 cluster-3)
HA_TLS_REDIS=(tls-redis-1 tls-redis-2)
HA_TLS_SENTINELS=(tls-sentinel-1 tls-sentinel-2 tls-sentinel-3)
HA_TLS_CLUSTER=(tls-cluster-1 tls-cluster-2 tls-cluster-3)
HA_TLS_SERVERS=("${HA_TLS_REDIS[@]}" "${HA_TLS_SENTINELS[@]}" "${HA_TLS_CLUSTER[@]}")
HA_SERVERS=("${HA_KAFKA[@]}" "${HA_REDIS[@]}" "${HA_SENTINELS[@]}" "${HA_CLUSTER[@]}" "${HA_TLS_SERVERS[@]}")
HA_MASTER_NAME=projector
HA_TLS_MASTER_NAME=projector-tls
# The worker's and projectorctl's ACL user on the TLS data servers: everything but the
# @dangerous category, with the few commands of it they use given back (INFO for the replica
# count of WAIT and the status, CLUSTER's key slot and topology queries).
HA_ACL_PROJECTOR='~* &* +@all -@dangerous +info +cluster|slots +cluster|shards +cluster|nodes +cluster|info'
# The client's ACL user on the TLS Sentinels: find the master and its replicas, follow failovers.
HA_ACL_SENTINEL_CLIENT='&* -@all +auth +hello +ping +client|setname +client|getname +sentinel|get-master-addr-by-name +sentinel|master +sentinel|replicas +sentinel|slaves +sentinel|sentinels +subscribe +psubscribe +unsubscribe +punsubscribe'
HA_TIMEOUT=${PROJECTOR_HA_START_TIMEOUT:-180}
declare -A HA_PORT=()

ha_log() { printf '[ha] %s\n' "$*" >&2; }
ha_die() {
	printf '[ha] ERROR: %s\n' "$*" >&2
	exit 1
}

# ha_state_init: HA_STATE from PROJECTOR_HA_DIR, as an absolute path.
ha_state_init() {
	[[ -n ${PROJECTOR_HA_DIR:-} ]] || ha_die "PROJECTOR_HA_DIR is not set"
	mkdir -p "$PROJECTOR_HA_DIR"
	HA_STATE=$(cd "$PROJECTOR_HA_DIR" && pwd)
}

ha_known() {
	local s
	for s in "${HA_SERVERS[@]}"; do [[ $s == "$1" ]] && return 0; done
	return 1
}

ha_load_ports() {
	[[ -f $HA_STATE/ports ]] || ha_die "no topology in $HA_STATE (start it with: scripts/ha.sh up)"
	# shellcheck disable=SC1091
	source "$HA_STATE/ports"
}

# ha_conf NAME: the config file of a server; its path is on the server's command line (Redis
# keeps it there through proc-title-template), which is how its pid is recognised.
ha_conf() {
	case $1 in
	kafka-*) echo "$HA_STATE/$1/server.properties" ;;
	sentinel-* | tls-sentinel-*) echo "$HA_STATE/$1/sentinel.conf" ;;
	*) echo "$HA_STATE/$1/redis.conf" ;;
	esac
}

ha_alive() { infra_pid_alive "$HA_STATE/$1.pid" "$(ha_conf "$1")"; }

ha_redis_cli() {
	local port=$1
	shift
	timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null
}

# ha_tls_cli PORT ARGS...: redis-cli to a server of the TLS set as ha-admin, with the client
# certificate; the password goes by REDISCLI_AUTH, never on a command line.
ha_tls_cli() {
	local port=$1
	shift
	ha_tls_redis_cli 5 -h 127.0.0.1 -p "$port" "$@" 2>/dev/null
}

# ha_tls_redis_cli TIMEOUT ARGS...: the same with any arguments and a timeout, stderr kept.
ha_tls_redis_cli() {
	local t=$1 d=$HA_STATE/tls
	shift
	REDISCLI_AUTH=$(<"$d/admin.password") timeout "$t" redis-cli --user ha-admin \
		--tls --cacert "$d/ca.crt" --cert "$d/client.crt" --key "$d/client.key" "$@"
}

# ha_make_tls: the CA, the server and client certificates and the ACL passwords of the TLS set,
# in $HA_STATE/tls (see the header).
ha_make_tls() {
	local dir=$HA_STATE/tls n
	local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
	rm -rf "$dir"
	mkdir -p "$dir"
	chmod 700 "$dir"
	{
		openssl req -x509 "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.crt" -days 30 \
			-subj "/CN=projector HA test CA $(date -u +%Y%m%dT%H%M%SZ)" \
			-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign &&
			printf '%s\n' basicConstraints=critical,CA:FALSE keyUsage=critical,digitalSignature \
				extendedKeyUsage=serverAuth,clientAuth subjectAltName=IP:127.0.0.1,DNS:localhost >"$dir/server.ext" &&
			printf '%s\n' basicConstraints=critical,CA:FALSE keyUsage=critical,digitalSignature \
				extendedKeyUsage=clientAuth >"$dir/client.ext" &&
			for n in server client; do
				openssl req "${ec[@]}" -keyout "$dir/$n.key" -out "$dir/$n.csr" \
					-subj "/CN=$([[ $n == server ]] && echo localhost || echo projector)" &&
					openssl x509 -req -in "$dir/$n.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
						-set_serial "0x$(openssl rand -hex 12)" -days 30 -extfile "$dir/$n.ext" -out "$dir/$n.crt" ||
					exit 1
			done &&
			for n in admin projector sentinel; do
				(umask 077 && openssl rand -hex 24 >"$dir/$n.password") || exit 1
			done
	} >"$dir/openssl.log" 2>&1 || {
		infra_show_log_tail "$dir/openssl.log"
		ha_die "openssl could not make the certificates of the TLS Redis set"
	}
	chmod 600 "$dir"/*.key "$dir"/*.password
}

# ha_pass_hash NAME: the SHA-256 of a password of the TLS set, for an ACL rule (#hash).
ha_pass_hash() { printf '%s' "$(<"$HA_STATE/tls/$1.password")" | sha256sum | cut -d' ' -f1; }

# ha_pick_ports chooses every port before anything starts and writes $HA_STATE/ports.
ha_pick_ports() {
	local base=${PROJECTOR_HA_PORT_BASE:-21000} taken=() n p
	((base + 600 < 32768)) || ha_die "PROJECTOR_HA_PORT_BASE=$base: the ports must stay below 32768 (ephemeral range)"
	HA_PORT=()
	p=$((base + 92))
	for n in 1 2 3; do
		p=$(infra_pick_port "$p" HA_NO_EXPLICIT_PORT "${taken[@]}")
		HA_PORT[kafka-$n]=$p
		taken+=("$p")
		p=$(infra_pick_port "$((p + 1))" HA_NO_EXPLICIT_PORT "${taken[@]}")
		HA_PORT[kafka-$n-controller]=$p
		taken+=("$p")
		p=$((p + 1))
	done
	p=$((base + 379))
	for n in redis-1 redis-2; do
		p=$(infra_pick_port "$p" HA_NO_EXPLICIT_PORT "${taken[@]}")
		HA_PORT[$n]=$p
		taken+=("$p")
	done
	p=$((base + 390))
	for n in "${HA_SENTINELS[@]}"; do
		p=$(infra_pick_port "$p" HA_NO_EXPLICIT_PORT "${taken[@]}")
		HA_PORT[$n]=$p
		taken+=("$p")
	done
	p=$((base + 400))
	for n in "${HA_CLUSTER[@]}"; do
		p=$(infra_pick_port "$p" HA_NO_EXPLICIT_PORT "${taken[@]}")
		HA_PORT[$n]=$p
		taken+=("$p")
	done
	p=$((base + 410))
	for n in "${HA_CLUSTER[@]}"; do
		p=$(infra_pick_port "$p" HA_NO_EXPLICIT_PORT "${taken[@]}")
		HA_PORT[$n-bus]=$p
		taken+=("$p")
	done
	local from
	for from in "420 ${HA_TLS_REDIS[*]}" "430 ${HA_TLS_SENTINELS[*]}" "440 ${HA_TLS_CLUSTER[*]}" \
		"450 ${HA_TLS_CLUSTER[*]/%/-bus}"; do
		# shellcheck disable=SC2086 # the start offset and the names
		set -- $from
		p=$((base + $1))
		shift
		for n in "$@"; do
			p=$(infra_pick_port "$p" HA_NO_EXPLICIT_PORT "${taken[@]}")
			HA_PORT[$n]=$p
			taken+=("$p")
		done
	done
	: >"$HA_STATE/ports"
	for n in "${!HA_PORT[@]}"; do
		echo "HA_PORT[$n]=${HA_PORT[$n]}" >>"$HA_STATE/ports"
	done
}

ha_write_kafka_configs() {
	local n voters=''
	for n in 1 2 3; do voters+="${voters:+,}$n@127.0.0.1:${HA_PORT[kafka-$n-controller]}"; done
	for n in 1 2 3; do
		mkdir -p "$HA_STATE/kafka-$n/data"
		cat >"$HA_STATE/kafka-$n/server.properties" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:${HA_PORT[kafka-$n]},CONTROLLER://127.0.0.1:${HA_PORT[kafka-$n-controller]}
advertised.listeners=PLAINTEXT://127.0.0.1:${HA_PORT[kafka-$n]}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$HA_STATE/kafka-$n/data
num.partitions=6
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
auto.create.topics.enable=false
delete.topic.enable=true
offsets.topic.replication.factor=3
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
EOF
	done
	infra_kafka_log4j "$HA_STATE/log4j2.properties"
}

# Settings every Redis process here shares. The config file's path stays on the command line.
ha_redis_common() {
	cat <<EOF
bind 127.0.0.1
port $1
protected-mode no
daemonize no
logfile ""
dir $2
proc-title-template "{title} {listen-addr} {server-mode} {config-file}"
EOF
}

ha_write_redis_configs() {
	local n dir
	for n in "${HA_REDIS[@]}" "${HA_CLUSTER[@]}"; do
		dir=$HA_STATE/$n
		mkdir -p "$dir"
		{
			ha_redis_common "${HA_PORT[$n]}" "$dir"
			cat <<EOF
appendonly yes
appendfsync always
save ""
maxmemory-policy noeviction
EOF
			case $n in
			redis-2) echo "replicaof 127.0.0.1 ${HA_PORT[redis-1]}" ;;
			cluster-*)
				cat <<EOF
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 3000
cluster-port ${HA_PORT[$n-bus]}
EOF
				;;
			esac
		} >"$dir/redis.conf"
	done
	for n in "${HA_SENTINELS[@]}"; do
		dir=$HA_STATE/$n
		mkdir -p "$dir"
		{
			ha_redis_common "${HA_PORT[$n]}" "$dir"
			cat <<EOF
sentinel monitor $HA_MASTER_NAME 127.0.0.1 ${HA_PORT[redis-1]} 2
sentinel down-after-milliseconds $HA_MASTER_NAME 3000
sentinel failover-timeout $HA_MASTER_NAME 10000
sentinel parallel-syncs $HA_MASTER_NAME 1
EOF
		} >"$dir/sentinel.conf"
	done
}

# ha_tls_common PORT DIR AUTH-CLIENTS: the settings of every server of the TLS set.
ha_tls_common() {
	local t=$HA_STATE/tls
	ha_redis_common 0 "$2"
	cat <<EOF
tls-port $1
tls-cert-file $t/server.crt
tls-key-file $t/server.key
tls-ca-cert-file $t/ca.crt
tls-auth-clients $3
tls-replication yes
user default off
user ha-admin on #$(ha_pass_hash admin) ~* &* +@all
EOF
}

ha_write_tls_configs() {
	local n dir admin
	admin=$(<"$HA_STATE/tls/admin.password")
	for n in "${HA_TLS_REDIS[@]}" "${HA_TLS_CLUSTER[@]}"; do
		dir=$HA_STATE/$n
		mkdir -p "$dir"
		{
			ha_tls_common "${HA_PORT[$n]}" "$dir" "$([[ $n == tls-cluster-* ]] && echo yes || echo optional)"
			cat <<EOF
user projector on #$(ha_pass_hash projector) $HA_ACL_PROJECTOR
masteruser ha-admin
masterauth $admin
appendonly yes
appendfsync always
save ""
maxmemory-policy noeviction
EOF
			case $n in
			tls-redis-2) echo "replicaof 127.0.0.1 ${HA_PORT[tls-redis-1]}" ;;
			tls-cluster-*)
				cat <<EOF
tls-cluster yes
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 3000
cluster-port ${HA_PORT[$n-bus]}
EOF
				;;
			esac
		} >"$dir/redis.conf"
		chmod 600 "$dir/redis.conf"
	done
	for n in "${HA_TLS_SENTINELS[@]}"; do
		dir=$HA_STATE/$n
		mkdir -p "$dir"
		{
			ha_tls_common "${HA_PORT[$n]}" "$dir" no
			cat <<EOF
user projector-sentinel on #$(ha_pass_hash sentinel) $HA_ACL_SENTINEL_CLIENT
sentinel sentinel-user ha-admin
sentinel sentinel-pass $admin
sentinel monitor $HA_TLS_MASTER_NAME 127.0.0.1 ${HA_PORT[tls-redis-1]} 2
sentinel auth-user $HA_TLS_MASTER_NAME ha-admin
sentinel auth-pass $HA_TLS_MASTER_NAME $admin
sentinel down-after-milliseconds $HA_TLS_MASTER_NAME 3000
sentinel failover-timeout $HA_TLS_MASTER_NAME 10000
sentinel parallel-syncs $HA_TLS_MASTER_NAME 1
EOF
		} >"$dir/sentinel.conf"
		chmod 600 "$dir/sentinel.conf"
	done
}

# ha_format_kafka formats the three nodes' storage with one cluster id, in parallel.
ha_format_kafka() {
	local jars=$1 id n pids=() rc=0
	id=$(infra_kafka_cluster_id)
	echo "$id" >"$HA_STATE/kafka.cluster-id"
	for n in 1 2 3; do
		java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$HA_STATE/log4j2.properties" \
			-cp "$jars/*" kafka.tools.StorageTool format -t "$id" -c "$HA_STATE/kafka-$n/server.properties" \
			--ignore-formatted >"$HA_STATE/kafka-$n-format.log" 2>&1 &
		pids+=($!)
	done
	for n in 1 2 3; do
		if ! wait "${pids[n - 1]}"; then
			infra_show_log_tail "$HA_STATE/kafka-$n-format.log"
			rc=1
		fi
	done
	((rc == 0)) || ha_die "formatting the storage of the Kafka nodes failed"
}

# ha_spawn NAME: starts one server in the background from its config; its pid in NAME.pid.
ha_spawn() {
	local name=$1 conf log=$HA_STATE/$1.log
	conf=$(ha_conf "$name")
	[[ -f $conf ]] || ha_die "$name has no config ($conf); start the topology with: scripts/ha.sh up"
	case $name in
	kafka-*)
		local jars
		jars=$(<"$HA_STATE/kafka.jars")
		nohup java -Xmx"${PROJECTOR_HA_KAFKA_HEAP:-384m}" -Xms128m -XX:+UseG1GC -XX:TieredStopAtLevel=1 \
			-Djava.awt.headless=true -Dlog4j2.configurationFile="$HA_STATE/log4j2.properties" \
			-cp "$jars/*" kafka.Kafka "$conf" </dev/null >>"$log" 2>&1 &
		;;
	sentinel-* | tls-sentinel-*) nohup redis-server "$conf" --sentinel </dev/null >>"$log" 2>&1 & ;;
	*) nohup redis-server "$conf" </dev/null >>"$log" 2>&1 & ;;
	esac
	echo $! >"$HA_STATE/$name.pid"
}

# ha_listening NAME: Kafka accepts on its client port; Redis answers PING with PONG (not LOADING).
ha_listening() {
	case $1 in
	kafka-*) infra_port_busy "${HA_PORT[$1]}" ;;
	tls-*) [[ $(ha_tls_cli "${HA_PORT[$1]}" PING) == PONG ]] ;;
	*) [[ $(ha_redis_cli "${HA_PORT[$1]}" PING) == PONG ]] ;;
	esac
}

# ha_wait_listening DEADLINE NAME...: until every server listens; fails when one exits.
ha_wait_listening() {
	local deadline=$1 name
	shift
	for name in "$@"; do
		until ha_listening "$name"; do
			# Right after the fork the child's command line is still the shell's, not the
			# server's: only a process that is gone has exited.
			if ! ha_alive "$name" && ! kill -0 "$(<"$HA_STATE/$name.pid")" 2>/dev/null; then
				infra_show_log_tail "$HA_STATE/$name.log"
				ha_die "$name exited before listening on port ${HA_PORT[$name]} (log: $HA_STATE/$name.log)"
			fi
			if ((SECONDS >= deadline)); then
				infra_show_log_tail "$HA_STATE/$name.log"
				ha_die "$name did not listen on port ${HA_PORT[$name]} within ${HA_TIMEOUT}s (log: $HA_STATE/$name.log)"
			fi
			sleep 0.2
		done
	done
}

ha_kafka_seeds() {
	local n s=''
	for n in 1 2 3; do s+="${s:+,}127.0.0.1:${HA_PORT[kafka-$n]}"; done
	echo "$s"
}

# ha_wait_kafka_cluster DEADLINE: until the metadata lists all three brokers.
ha_wait_kafka_cluster() {
	local deadline=$1 out left
	while :; do
		left=$((deadline - SECONDS))
		((left < 5)) && left=5
		((left > 15)) && left=15
		out=$("$HA_STATE/kafkaready" -seeds "$(ha_kafka_seeds)" -timeout "${left}s" 2>&1) || true
		[[ $out == *", 3 broker(s)"* ]] && break
		if ((SECONDS >= deadline)); then
			ha_log "last probe: $out"
			ha_die "the Kafka cluster did not report 3 brokers within ${HA_TIMEOUT}s (logs: $HA_STATE/kafka-*.log)"
		fi
		sleep 0.5
	done
	ha_log "${out#kafkaready: }"
}

# ha_kv FIELD: the value after the line FIELD in redis-cli's raw key/value output on stdin.
ha_kv() { awk -v k="$1" 'prev == k { print; exit } { prev = $0 }'; }

# The checks below take an optional PREFIX "tls-": then they check the TLS set.
ha_replica_linked() {
	local p=${1:-} cli=ha_redis_cli
	[[ -n $p ]] && cli=ha_tls_cli
	[[ $($cli "${HA_PORT[${p}redis-2]}" INFO replication) == *master_link_status:up* ]]
}

# ha_sentinels_ready [PREFIX]: every Sentinel names redis-1 as master and knows the replica and
# the two other Sentinels.
ha_sentinels_ready() {
	local p=${1:-} cli=ha_redis_cli master=$HA_MASTER_NAME s out
	[[ -n $p ]] && cli=ha_tls_cli master=$HA_TLS_MASTER_NAME
	for s in "${HA_SENTINELS[@]}"; do
		s=$p$s
		out=$($cli "${HA_PORT[$s]}" SENTINEL master "$master") || return 1
		[[ $(ha_kv port <<<"$out") == "${HA_PORT[${p}redis-1]}" ]] || return 1
		[[ $(ha_kv flags <<<"$out") == master ]] || return 1
		[[ $(ha_kv num-slaves <<<"$out") == 1 ]] || return 1
		[[ $(ha_kv num-other-sentinels <<<"$out") == 2 ]] || return 1
		out=$($cli "${HA_PORT[$s]}" SENTINEL replicas "$master") || return 1
		[[ $(ha_kv port <<<"$out") == "${HA_PORT[${p}redis-2]}" ]] || return 1
	done
}

ha_cluster_ok() {
	local p=${1:-} cli=ha_redis_cli n
	[[ -n $p ]] && cli=ha_tls_cli
	for n in "${HA_CLUSTER[@]}"; do
		[[ $($cli "${HA_PORT[$p$n]}" CLUSTER INFO) == *cluster_state:ok* ]] || return 1
	done
}

# ha_wait_until DEADLINE WHAT CMD...: polls CMD until it succeeds.
ha_wait_until() {
	local deadline=$1 what=$2
	shift 2
	until "$@"; do
		((SECONDS < deadline)) || ha_die "$what not reached within ${HA_TIMEOUT}s (logs: $HA_STATE/*.log)"
		sleep 0.2
	done
}

ha_write_env() {
	local n kafka_nodes='' redis_nodes='' cluster='' sentinels=''
	for n in 1 2 3; do
		kafka_nodes+="${kafka_nodes:+,}$n=127.0.0.1:${HA_PORT[kafka-$n]}"
		sentinels+="${sentinels:+,}127.0.0.1:${HA_PORT[sentinel-$n]}"
		cluster+="${cluster:+,}$n=127.0.0.1:${HA_PORT[cluster-$n]}"
	done
	for n in 1 2; do redis_nodes+="${redis_nodes:+,}$n=127.0.0.1:${HA_PORT[redis-$n]}"; done
	local tls_nodes='' tls_cluster='' tls_sentinels='' t=$HA_STATE/tls
	for n in 1 2 3; do
		tls_sentinels+="${tls_sentinels:+,}127.0.0.1:${HA_PORT[tls-sentinel-$n]}"
		tls_cluster+="${tls_cluster:+,}$n=127.0.0.1:${HA_PORT[tls-cluster-$n]}"
	done
	for n in 1 2; do tls_nodes+="${tls_nodes:+,}$n=127.0.0.1:${HA_PORT[tls-redis-$n]}"; done
	cat >"$HA_STATE/env" <<EOF
export PROJECTOR_HA_KAFKA_SEEDS=$(ha_kafka_seeds)
export PROJECTOR_HA_KAFKA_NODES=$kafka_nodes
export PROJECTOR_HA_REDIS_SENTINELS=$sentinels
export PROJECTOR_HA_REDIS_MASTER_NAME=$HA_MASTER_NAME
export PROJECTOR_HA_REDIS_NODES=$redis_nodes
export PROJECTOR_HA_REDIS_CLUSTER=$cluster
export PROJECTOR_HA_REDIS_TLS_ADDR=127.0.0.1:${HA_PORT[tls-redis-1]}
export PROJECTOR_HA_REDIS_TLS_NODES=$tls_nodes
export PROJECTOR_HA_REDIS_TLS_SENTINELS=$tls_sentinels
export PROJECTOR_HA_REDIS_TLS_MASTER_NAME=$HA_TLS_MASTER_NAME
export PROJECTOR_HA_REDIS_TLS_CLUSTER=$tls_cluster
export PROJECTOR_HA_REDIS_TLS_CA_FILE=$t/ca.crt
export PROJECTOR_HA_REDIS_TLS_CERT_FILE=$t/client.crt
export PROJECTOR_HA_REDIS_TLS_KEY_FILE=$t/client.key
export PROJECTOR_HA_REDIS_ACL_USER=projector
export PROJECTOR_HA_REDIS_ACL_PASSWORD_FILE=$t/projector.password
export PROJECTOR_HA_REDIS_SENTINEL_ACL_USER=projector-sentinel
export PROJECTOR_HA_REDIS_SENTINEL_ACL_PASSWORD_FILE=$t/sentinel.password
export PROJECTOR_HA_CTL=$INFRA_ROOT/scripts/ha.sh
export PROJECTOR_HA_DIR=$HA_STATE
EOF
}

# ha_up starts the whole topology, waits until it is healthy and writes $HA_STATE/env. A
# failure exits (the caller's trap should run ha_down).
ha_up() {
	local start=$SECONDS deadline jars probe_pid n
	PROJECTOR_NO_JAEGER=1 infra_plan
	[[ $INFRA_KAFKA_MODE == native && $INFRA_REDIS_MODE == native ]] ||
		ha_die "the HA topology needs Java 17+, Maven (once) and redis-server on this machine"
	command -v openssl >/dev/null 2>&1 || ha_die "the TLS Redis set needs openssl (Debian: apt-get install openssl)"
	deadline=$((SECONDS + HA_TIMEOUT))
	rm -f "$HA_STATE/env"
	ha_pick_ports
	jars=$(infra_kafka_jars)
	echo "$jars" >"$HA_STATE/kafka.jars"
	(cd "$INFRA_ROOT" && go build -o "$HA_STATE/kafkaready" ./internal/testenv/cmd/kafkaready) &
	probe_pid=$!
	ha_write_kafka_configs
	ha_write_redis_configs
	ha_make_tls
	ha_write_tls_configs
	ha_format_kafka "$jars"
	ha_log "starting Kafka $INFRA_KAFKA_VERSION nodes 1..3 on 127.0.0.1:$(ha_kafka_seeds | sed 's/127.0.0.1://g') (controllers ${HA_PORT[kafka-1-controller]},${HA_PORT[kafka-2-controller]},${HA_PORT[kafka-3-controller]}), heap ${PROJECTOR_HA_KAFKA_HEAP:-384m} each"
	for n in "${HA_KAFKA[@]}"; do ha_spawn "$n"; done
	ha_log "starting Redis master :${HA_PORT[redis-1]}, replica :${HA_PORT[redis-2]}, cluster :${HA_PORT[cluster-1]},${HA_PORT[cluster-2]},${HA_PORT[cluster-3]}"
	for n in "${HA_REDIS[@]}" "${HA_CLUSTER[@]}"; do ha_spawn "$n"; done
	ha_log "starting the TLS set: master :${HA_PORT[tls-redis-1]}, replica :${HA_PORT[tls-redis-2]}, cluster :${HA_PORT[tls-cluster-1]},${HA_PORT[tls-cluster-2]},${HA_PORT[tls-cluster-3]}"
	for n in "${HA_TLS_REDIS[@]}" "${HA_TLS_CLUSTER[@]}"; do ha_spawn "$n"; done
	ha_wait_listening "$deadline" "${HA_REDIS[@]}" "${HA_CLUSTER[@]}" "${HA_TLS_REDIS[@]}" "${HA_TLS_CLUSTER[@]}"
	ha_wait_until "$deadline" "redis-2's master_link_status:up" ha_replica_linked
	ha_wait_until "$deadline" "tls-redis-2's master_link_status:up" ha_replica_linked tls-
	ha_log "starting Sentinels :${HA_PORT[sentinel-1]},${HA_PORT[sentinel-2]},${HA_PORT[sentinel-3]}, TLS Sentinels :${HA_PORT[tls-sentinel-1]},${HA_PORT[tls-sentinel-2]},${HA_PORT[tls-sentinel-3]}"
	for n in "${HA_SENTINELS[@]}" "${HA_TLS_SENTINELS[@]}"; do ha_spawn "$n"; done
	local addrs=()
	for n in "${HA_CLUSTER[@]}"; do addrs+=("127.0.0.1:${HA_PORT[$n]}"); done
	if ! timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
		>"$HA_STATE/cluster-create.log" 2>&1; then
		infra_show_log_tail "$HA_STATE/cluster-create.log"
		ha_die "redis-cli --cluster create failed"
	fi
	addrs=()
	for n in "${HA_TLS_CLUSTER[@]}"; do addrs+=("127.0.0.1:${HA_PORT[$n]}"); done
	if ! ha_tls_redis_cli 60 --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
		>"$HA_STATE/tls-cluster-create.log" 2>&1; then
		infra_show_log_tail "$HA_STATE/tls-cluster-create.log"
		ha_die "redis-cli --cluster create failed for the TLS cluster"
	fi
	ha_wait_listening "$deadline" "${HA_SENTINELS[@]}" "${HA_TLS_SENTINELS[@]}"
	ha_wait_until "$deadline" "cluster_state:ok on every Redis Cluster node" ha_cluster_ok
	ha_wait_until "$deadline" "cluster_state:ok on every TLS Redis Cluster node" ha_cluster_ok tls-
	ha_wait_until "$deadline" "Sentinels knowing master, replica and each other" ha_sentinels_ready
	ha_wait_until "$deadline" "TLS Sentinels knowing master, replica and each other" ha_sentinels_ready tls-
	ha_log "Redis ready after $((SECONDS - start))s"
	wait "$probe_pid" || ha_die "building internal/testenv/cmd/kafkaready failed"
	ha_wait_listening "$deadline" "${HA_KAFKA[@]}"
	ha_wait_kafka_cluster "$deadline"
	ha_write_env
	ha_log "topology ready after $((SECONDS - start))s (state: $HA_STATE)"
}

# ha_start NAME: starts a stopped server again with its config and data; returns once it
# listens. Nothing on stdout.
ha_start() {
	local name=$1
	ha_alive "$name" && return 0
	ha_spawn "$name"
	ha_wait_listening "$((SECONDS + HA_TIMEOUT))" "$name"
}

# ha_kill NAME: SIGKILL, and wait until the process is gone.
ha_kill() {
	local name=$1 pid i
	ha_alive "$name" || {
		rm -f "$HA_STATE/$name.pid"
		return 0
	}
	pid=$(<"$HA_STATE/$name.pid")
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		ha_alive "$name" || break
		sleep 0.05
	done
	ha_alive "$name" && ha_die "$name (pid $pid) survived SIGKILL for 5s"
	rm -f "$HA_STATE/$name.pid"
}

# ha_stop NAME...: SIGTERM to all of them at once, wait up to WAIT seconds (HA_STOP_WAIT,
# default 15), then SIGKILL whatever is left. Only pids whose command line names our config.
ha_stop() {
	local name pids=() i left
	for name in "$@"; do
		if ha_alive "$name"; then
			kill -TERM "$(<"$HA_STATE/$name.pid")" 2>/dev/null || true
			pids+=("$name")
		else
			rm -f "$HA_STATE/$name.pid"
		fi
	done
	for ((i = 0; i < ${HA_STOP_WAIT:-15} * 10; i++)); do
		left=0
		for name in "${pids[@]}"; do ha_alive "$name" && left=1; done
		((left)) || break
		sleep 0.1
	done
	for name in "${pids[@]}"; do
		if ha_alive "$name"; then
			ha_log "$name (pid $(<"$HA_STATE/$name.pid")) did not stop within ${HA_STOP_WAIT:-15}s; killing it"
			ha_kill "$name"
		fi
		rm -f "$HA_STATE/$name.pid"
	done
}

# ha_down stops every server and removes configs and data, keeping the logs.
ha_down() {
	local n
	ha_stop "${HA_SERVERS[@]}"
	for n in "${HA_SERVERS[@]}"; do rm -rf "${HA_STATE:?}/$n"; done
	rm -rf "${HA_STATE:?}/tls"
	rm -f "$HA_STATE/env" "$HA_STATE/ports" "$HA_STATE/kafkaready" "$HA_STATE/kafka.jars" \
		"$HA_STATE/kafka.cluster-id" "$HA_STATE/log4j2.properties"
}
