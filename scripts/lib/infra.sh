# shellcheck shell=bash
#
# Local test infrastructure: a single-node KRaft Apache Kafka broker, a Redis server and a
# Jaeger v2 (OTLP receiver, in-memory trace store, query API) on 127.0.0.1, with their data in
# a state directory. Sourced by scripts/test.sh and
# scripts/infra.sh; every function and variable here is prefixed infra_ / INFRA_.
#
# State directory layout (INFRA_STATE):
#   kafka.pid kafka.log kafka/server.properties kafka/log4j2.properties kafka/data/
#   kafka/tls/     throw-away CA (ca.pem, ca.key), broker key+chain (broker-keystore.pem) for
#                  the SASL_SSL, SSL and OAUTH listeners, a client certificate and key
#                  (client.pem, client.key, CN=projector-client) for the SSL (mTLS) listener, and
#                  the unsecured JWT the readiness probe sends to the OAUTH listener (probe.jwt)
#   redis.pid redis.log redis/
#   jaeger.pid jaeger.log jaeger/config.yaml jaeger-build.log
#   env            the export lines for the running servers
#   javaproducer.path  the path of the Java producer's jar (PROJECTOR_JAVA_PRODUCER_JAR), kept in
#                  $PROJECTOR_CACHE_DIR/javaproducer/ and built from internal/javaproducer
#   kafkaready     the readiness probe binary (built from internal/testenv/cmd/kafkaready)
#
# Knobs (environment):
#   PROJECTOR_KAFKA_VERSION        Kafka release to run (default below)
#   PROJECTOR_KAFKA_PORT           client port; a busy explicit port is an error,
#   PROJECTOR_KAFKA_CONTROLLER_PORT   otherwise the first free port from a default is used
#   PROJECTOR_KAFKA_SASL_SSL_PORT  SASL_SSL (PLAIN and SCRAM-SHA-256/512 over TLS) client port
#   PROJECTOR_KAFKA_MTLS_PORT      SSL client port that requires a client certificate (mTLS)
#   PROJECTOR_KAFKA_OAUTH_PORT     SASL_SSL client port with OAUTHBEARER (unsecured JWTs)
#   PROJECTOR_KAFKA_OAUTH_REAUTH_MS  connections.max.reauth.ms of the OAUTHBEARER port (10000)
#   PROJECTOR_REDIS_PORT
#   PROJECTOR_JAEGER_OTLP_GRPC_PORT, PROJECTOR_JAEGER_OTLP_HTTP_PORT,
#   PROJECTOR_JAEGER_QUERY_PORT (HTTP API and UI), PROJECTOR_JAEGER_QUERY_GRPC_PORT
#   PROJECTOR_JAEGER_START_TIMEOUT seconds to wait for Jaeger's query API (default 60)
#   PROJECTOR_NO_JAEGER=1          neither build nor start Jaeger (its tests then skip, or fail
#                                  under CI=true)
#   PROJECTOR_KAFKA_START_TIMEOUT  seconds to wait for the broker (default 120)
#   PROJECTOR_KAFKA_HEAP           JVM heap (default 512m)
#   PROJECTOR_CACHE_DIR            where broker jars and the jaeger binary are kept
#                                  (default $XDG_CACHE_HOME/projector)
#   PROJECTOR_NO_INSTALL=1         never call apt-get; fail with a message instead
#
# The broker has four client listeners:
#   PLAINTEXT (PROJECTOR_KAFKA_SEEDS);
#   SASL_SSL with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over TLS (PROJECTOR_KAFKA_SASL_SSL_SEEDS),
#     whose one user (PROJECTOR_KAFKA_SCRAM_USER / _PASSWORD, random password) is in the
#     PLAIN JAAS entry of server.properties (mode 600) and created for SCRAM when storage is formatted;
#   SSL with ssl.client.auth=required, mutual TLS (PROJECTOR_KAFKA_MTLS_SEEDS): clients show a
#     certificate signed by the same CA (PROJECTOR_KAFKA_CLIENT_CERT_FILE / _KEY_FILE);
#   SASL_SSL with OAUTHBEARER (PROJECTOR_KAFKA_OAUTH_SEEDS), named OAUTH: Kafka's built-in
#     unsecured JWT validator (no callback handler is configured), so any {"alg":"none"} token
#     with sub, iat and exp is accepted until its exp. connections.max.reauth.ms is
#     PROJECTOR_KAFKA_OAUTH_REAUTH_MS, so clients must re-authenticate, with a fresh token,
#     that often. SASL_SSL rather than SASL_PLAINTEXT: a bearer token must never cross a wire
#     in clear, and token + TLS with a private CA is what deployments combine.
# Every TLS listener's certificate is signed by a CA made for this run (PROJECTOR_KAFKA_CA_FILE).
# Inter-broker and controller traffic stay PLAINTEXT.
#
# Jaeger is github.com/jaegertracing/jaeger/cmd/jaeger at the version pinned in
# tools/jaeger/go.mod, built once into $PROJECTOR_CACHE_DIR/jaeger-<version>/ (minutes cold). Every listener
# it has is bound to 127.0.0.1; its own telemetry (metrics port 8888) is switched off.

INFRA_KAFKA_VERSION=${PROJECTOR_KAFKA_VERSION:-4.3.1}
# The broker brings log4j-core but no SLF4J binding: without one it logs nothing.
INFRA_LOG4J_VERSION=2.25.4
INFRA_SLF4J_VERSION=2.0.17
INFRA_CACHE_DIR=${PROJECTOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/projector}
INFRA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

infra_log() { printf '[infra] %s\n' "$*" >&2; }
infra_die() {
	printf '[infra] ERROR: %s\n' "$*" >&2
	exit 1
}

# infra_port_busy PORT: true when something accepts connections on 127.0.0.1:PORT.
infra_port_busy() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# infra_pick_port PREFERRED EXPLICIT_VAR [AVOID...]: prints a free port. An explicitly
# configured port (the variable named EXPLICIT_VAR is set) must be free; otherwise the first
# free port from PREFERRED upwards, skipping AVOID, is taken.
infra_pick_port() {
	local preferred=$1 var=$2
	shift 2
	local explicit=${!var:-}
	if [[ -n $explicit ]]; then
		if infra_port_busy "$explicit"; then
			infra_die "port $explicit (from $var) is already in use on 127.0.0.1; free it or choose another port"
		fi
		echo "$explicit"
		return
	fi
	local p avoid taken
	for ((p = preferred; p < preferred + 200; p++)); do
		taken=
		for avoid in "$@"; do [[ $p == "$avoid" ]] && taken=1; done
		[[ -z $taken ]] && ! infra_port_busy "$p" && {
			echo "$p"
			return
		}
	done
	infra_die "no free port in $preferred..$((preferred + 199)) on 127.0.0.1"
}

infra_docker_healthy() {
	command -v docker >/dev/null 2>&1 && timeout 5 docker info >/dev/null 2>&1
}

infra_can_apt() {
	[[ ${PROJECTOR_NO_INSTALL:-} != 1 ]] && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]
}

# infra_apt_install PKG...: installs Debian packages without letting their maintainer scripts
# start services (a system redis on 6379 would outlive us and is not ours to manage).
infra_apt_install() {
	local policy=/usr/sbin/policy-rc.d backup=
	if [[ -e $policy ]]; then
		backup=$(mktemp)
		cp -p "$policy" "$backup"
	fi
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod +x "$policy"
	local rc=0 log
	log=$(mktemp)
	{
		DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
	} >"$log" 2>&1 || rc=$?
	if [[ -n $backup ]]; then mv "$backup" "$policy"; else rm -f "$policy"; fi
	if ((rc != 0)); then
		infra_show_log_tail "$log"
		infra_log "apt-get install $* failed"
	fi
	rm -f "$log"
	return "$rc"
}

# infra_plan decides, per service, whether it runs natively ("native") or is left to
# testcontainers in the tests ("docker"), installing what is missing when it can. Sets
# INFRA_KAFKA_MODE and INFRA_REDIS_MODE, or fails with one message saying what to install.
infra_plan() {
	local missing=() docker=
	infra_docker_healthy && docker=1
	command -v go >/dev/null 2>&1 || infra_die "Go is not installed (need Go 1.26+ on PATH)"

	INFRA_KAFKA_MODE=native
	if ! command -v java >/dev/null 2>&1 || { [[ ! -f $INFRA_CACHE_DIR/kafka-$INFRA_KAFKA_VERSION/.complete ]] && ! command -v mvn >/dev/null 2>&1; }; then
		if [[ -n $docker ]]; then
			INFRA_KAFKA_MODE=docker
		elif infra_can_apt; then
			infra_log "installing Java 17 and Maven with apt-get"
			infra_apt_install openjdk-17-jre-headless maven || missing+=("Java 17+ and Maven")
		else
			missing+=("Java 17+ and Maven (Debian: apt-get install openjdk-17-jre-headless maven)")
		fi
	fi

	# openssl makes the throw-away CA and broker certificate for the SASL_SSL listener.
	if [[ $INFRA_KAFKA_MODE == native ]] && ! command -v openssl >/dev/null 2>&1; then
		if infra_can_apt; then
			infra_log "installing openssl with apt-get"
			infra_apt_install openssl || missing+=("openssl")
		else
			missing+=("openssl (Debian: apt-get install openssl)")
		fi
	fi

	INFRA_REDIS_MODE=native
	if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
		if [[ -n $docker ]]; then
			INFRA_REDIS_MODE=docker
		elif infra_can_apt; then
			infra_log "installing redis-server with apt-get (its system service is not started)"
			infra_apt_install redis-server || missing+=("redis-server")
		else
			missing+=("redis-server 7+ (Debian: apt-get install redis-server)")
		fi
	fi

	# Jaeger needs only Go (checked above) to build, and curl for the readiness check.
	INFRA_JAEGER_MODE=native
	[[ ${PROJECTOR_NO_JAEGER:-} == 1 ]] && INFRA_JAEGER_MODE=off
	if [[ $INFRA_JAEGER_MODE == native ]] && ! command -v curl >/dev/null 2>&1; then
		if infra_can_apt; then
			infra_log "installing curl with apt-get"
			infra_apt_install curl || missing+=("curl")
		else
			missing+=("curl (Debian: apt-get install curl), or set PROJECTOR_NO_JAEGER=1")
		fi
	fi

	# Chromium, headless, runs the web console's browser test (examples/billing
	# TestBrowserConsole). Without it only that test fails (PROJECTOR_REQUIRE_REAL), so a
	# missing browser does not stop the servers.
	if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
		if infra_can_apt; then
			infra_log "installing chromium with apt-get (the console's browser test)"
			infra_apt_install chromium || infra_log "no chromium: the console's browser test will fail"
		else
			infra_log "no chromium (Debian: apt-get install chromium): the console's browser test will fail"
		fi
	fi

	if ((${#missing[@]})); then
		local list
		list=$(printf '%s; ' "${missing[@]}")
		infra_die "cannot run a real Kafka and Redis here. Install: ${list%; } — or start a Docker engine (the tests then use testcontainers)."
	fi
}

# infra_kafka_jars: prints the directory holding the broker's classpath, downloading it
# through Maven into the cache on first use. The throw-away pom lives in a temp dir.
infra_kafka_jars() {
	local dir=$INFRA_CACHE_DIR/kafka-$INFRA_KAFKA_VERSION
	if [[ -f $dir/.complete ]]; then
		echo "$dir"
		return
	fi
	command -v mvn >/dev/null 2>&1 || infra_die "Maven (mvn) is needed once to download Kafka $INFRA_KAFKA_VERSION"
	# Two scripts starting servers at once (scripts/infra.sh and scripts/ha.sh of parallel runs)
	# share the cache: one downloads, the other waits for it and uses its result.
	mkdir -p "$INFRA_CACHE_DIR"
	local lock
	exec {lock}>"$dir.lock"
	flock "$lock"
	if [[ -f $dir/.complete ]]; then
		exec {lock}>&-
		echo "$dir"
		return
	fi
	local work start
	work=$(mktemp -d)
	start=$SECONDS
	infra_log "downloading Kafka $INFRA_KAFKA_VERSION jars with Maven into $dir"
	cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.projector.infra</groupId>
  <artifactId>kafka-broker-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- Declared first so that Maven picks SLF4J 2 (the binding below needs it), not Kafka's 1.7. -->
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$INFRA_SLF4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$INFRA_LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$INFRA_LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$INFRA_KAFKA_VERSION</version></dependency>
  </dependencies>
</project>
EOF
	mkdir -p "$INFRA_CACHE_DIR"
	rm -rf "$dir.partial"
	if ! (cd "$work" && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime \
		-DoutputDirectory="$dir.partial" >"$work/mvn.log" 2>&1); then
		tail -n 40 "$work/mvn.log" >&2
		rm -rf "$work" "$dir.partial"
		infra_die "Maven could not download org.apache.kafka:kafka_2.13:$INFRA_KAFKA_VERSION (log above)"
	fi
	rm -rf "$work" "$dir"
	touch "$dir.partial/.complete"
	mv "$dir.partial" "$dir"
	infra_log "Kafka jars ready after $((SECONDS - start))s"
	exec {lock}>&-
	echo "$dir"
}

# infra_kafka_cluster_id: a random Kafka cluster ID (16 random bytes, URL-safe base64,
# 22 characters, not starting with '-'), made without starting a JVM.
infra_kafka_cluster_id() {
	local id
	while :; do
		id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
		[[ ${#id} == 22 && $id != -* ]] && break
	done
	echo "$id"
}

# infra_kafka_tls: a throw-away CA and a broker certificate for 127.0.0.1 and localhost (EC
# P-256, valid for 7 days), in $INFRA_STATE/kafka/tls. Kafka reads the broker's unencrypted
# PKCS#8 key and its chain from one PEM file (ssl.keystore.type=PEM, no ssl.key.password).
infra_kafka_tls() {
	local dir=$INFRA_STATE/kafka/tls
	rm -rf "$dir"
	mkdir -p "$dir"
	chmod 700 "$dir"
	local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
	{
		openssl req -x509 "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 7 \
			-subj "/CN=projector test CA $(date -u +%Y%m%dT%H%M%SZ)" \
			-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign &&
			openssl req "${ec[@]}" -keyout "$dir/broker.key" -out "$dir/broker.csr" -subj /CN=localhost &&
			printf '%s\n' basicConstraints=critical,CA:FALSE keyUsage=critical,digitalSignature \
				extendedKeyUsage=serverAuth subjectAltName=IP:127.0.0.1,DNS:localhost >"$dir/broker.ext" &&
			openssl x509 -req -in "$dir/broker.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
				-set_serial "0x$(openssl rand -hex 12)" -days 7 -extfile "$dir/broker.ext" -out "$dir/broker.pem" &&
			openssl req "${ec[@]}" -keyout "$dir/client.key" -out "$dir/client.csr" -subj /CN=projector-client &&
			printf '%s\n' basicConstraints=critical,CA:FALSE keyUsage=critical,digitalSignature \
				extendedKeyUsage=clientAuth >"$dir/client.ext" &&
			openssl x509 -req -in "$dir/client.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
				-set_serial "0x$(openssl rand -hex 12)" -days 7 -extfile "$dir/client.ext" -out "$dir/client.pem"
	} >"$dir/openssl.log" 2>&1 || {
		infra_show_log_tail "$dir/openssl.log"
		infra_die "openssl could not make the CA, broker and client certificates for the TLS listeners"
	}
	# Key first, then the chain (leaf, CA).
	cat "$dir/broker.key" "$dir/broker.pem" "$dir/ca.pem" >"$dir/broker-keystore.pem"
	(umask 077 && infra_unsecured_jwt projector-probe 604800 >"$dir/probe.jwt")
	chmod 600 "$dir"/*.key "$dir/broker-keystore.pem"
}

# infra_unsecured_jwt SUB SECONDS: prints an unsecured JWT ({"alg":"none"}: base64url header,
# base64url claims, empty signature) for SUB, valid for SECONDS, as Kafka's
# OAuthBearerUnsecuredValidatorCallbackHandler accepts it.
infra_unsecured_jwt() {
	local now header claims
	now=$(date +%s)
	header=$(printf '{"alg":"none"}' | base64 -w0 | tr '+/' '-_' | tr -d '=')
	claims=$(printf '{"sub":"%s","iat":%d,"exp":%d}' "$1" "$now" "$((now + $2))" | base64 -w0 | tr '+/' '-_' | tr -d '=')
	printf '%s.%s.\n' "$header" "$claims"
}

infra_kafka_write_config() {
	local dir=$INFRA_STATE/kafka
	mkdir -p "$dir/data"
	local clients="PLAINTEXT://127.0.0.1:$INFRA_KAFKA_PORT,SASL_SSL://127.0.0.1:$INFRA_KAFKA_SASL_SSL_PORT"
	clients+=",SSL://127.0.0.1:$INFRA_KAFKA_MTLS_PORT,OAUTH://127.0.0.1:$INFRA_KAFKA_OAUTH_PORT"
	INFRA_KAFKA_LISTENERS="$clients,CONTROLLER://127.0.0.1:$INFRA_KAFKA_CONTROLLER_PORT"
	INFRA_KAFKA_ADVERTISED=$clients
	INFRA_KAFKA_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL,OAUTH:SASL_SSL"
	# It holds the PLAIN user's password: readable by its owner only.
	: >"$dir/server.properties"
	chmod 600 "$dir/server.properties"
	cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$INFRA_KAFKA_CONTROLLER_PORT
listeners=$INFRA_KAFKA_LISTENERS
advertised.listeners=$INFRA_KAFKA_ADVERTISED
controller.listener.names=CONTROLLER
listener.security.protocol.map=$INFRA_KAFKA_PROTOCOL_MAP
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
# SASL_SSL: SCRAM-SHA-256/512 over TLS. Users are created by StorageTool format --add-scram.
# PLAIN over TLS too, for the same user and password (PlainLoginModule's user_<name> entry).
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$INFRA_KAFKA_SCRAM_USER="$INFRA_KAFKA_SCRAM_PASSWORD";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$dir/tls/broker-keystore.pem
listener.name.sasl_ssl.ssl.client.auth=none
# SSL: mutual TLS, a client certificate signed by the CA is required.
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$dir/tls/broker-keystore.pem
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$dir/tls/ca.pem
listener.name.ssl.ssl.client.auth=required
# OAUTH: SASL_SSL with OAUTHBEARER. No sasl.server.callback.handler.class, so the broker
# validates with OAuthBearerUnsecuredValidatorCallbackHandler (unsecured JWTs; checks exp); the
# login option is the broker's own token, unused (inter-broker traffic is PLAINTEXT). A
# session lasts until the token's exp or connections.max.reauth.ms, whichever is first.
listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker";
listener.name.oauth.oauthbearer.connections.max.reauth.ms=$INFRA_KAFKA_OAUTH_REAUTH_MS
listener.name.oauth.ssl.keystore.type=PEM
listener.name.oauth.ssl.keystore.location=$dir/tls/broker-keystore.pem
listener.name.oauth.ssl.client.auth=none
EOF
	# PROJECTOR_KAFKA_EXTRA_PROPERTIES: more broker settings, separated by ';' (for measurements, e.g.
	# group.consumer.min.session.timeout.ms=6000;group.consumer.session.timeout.ms=6000).
	if [[ -n ${PROJECTOR_KAFKA_EXTRA_PROPERTIES:-} ]]; then
		tr ';' '\n' <<<"$PROJECTOR_KAFKA_EXTRA_PROPERTIES" >>"$dir/server.properties"
	fi
	infra_kafka_log4j "$dir/log4j2.properties"
}

# infra_kafka_log4j FILE: the brokers' log4j2 configuration (INFO to stdout, request and state-change
# loggers at WARN).
infra_kafka_log4j() {
	cat >"$1" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF
}

# infra_pid_alive PIDFILE PATTERN: true when the PID in PIDFILE is a live process whose
# command line contains PATTERN (so a recycled PID is never mistaken for ours).
infra_pid_alive() {
	local pidfile=$1 pattern=$2 pid
	[[ -f $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
	{ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$pattern"
}

infra_show_log_tail() {
	local log=$1
	printf '[infra] ---- last 40 lines of %s ----\n' "$log" >&2
	tail -n 40 "$log" >&2 || true
	printf '[infra] ----\n' >&2
}

infra_start_kafka() {
	local jars cluster_id
	jars=$(infra_kafka_jars)
	infra_kafka_tls
	# The user and password first: the PLAIN listener's JAAS entry in the config holds them.
	INFRA_KAFKA_SCRAM_USER=projector
	INFRA_KAFKA_SCRAM_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr '+/' 'xy')
	infra_kafka_write_config
	cluster_id=$(infra_kafka_cluster_id)
	local java_opts=(-Xmx"${PROJECTOR_KAFKA_HEAP:-512m}" -Xms256m -XX:+UseG1GC -XX:TieredStopAtLevel=1
		-Djava.awt.headless=true -Dlog4j2.configurationFile="$INFRA_STATE/kafka/log4j2.properties")
	if ! java "${java_opts[@]}" -cp "$jars/*" kafka.tools.StorageTool format -t "$cluster_id" \
		-c "$INFRA_STATE/kafka/server.properties" --ignore-formatted \
		--add-scram "SCRAM-SHA-256=[name=$INFRA_KAFKA_SCRAM_USER,password=$INFRA_KAFKA_SCRAM_PASSWORD]" \
		--add-scram "SCRAM-SHA-512=[name=$INFRA_KAFKA_SCRAM_USER,password=$INFRA_KAFKA_SCRAM_PASSWORD]" \
		>"$INFRA_STATE/kafka-format.log" 2>&1; then
		infra_show_log_tail "$INFRA_STATE/kafka-format.log"
		infra_die "formatting Kafka storage failed"
	fi
	infra_log "starting Kafka $INFRA_KAFKA_VERSION on 127.0.0.1:$INFRA_KAFKA_PORT, SASL_SSL :$INFRA_KAFKA_SASL_SSL_PORT, SSL (mTLS) :$INFRA_KAFKA_MTLS_PORT, OAUTHBEARER :$INFRA_KAFKA_OAUTH_PORT (controller :$INFRA_KAFKA_CONTROLLER_PORT)"
	nohup java "${java_opts[@]}" -cp "$jars/*" kafka.Kafka "$INFRA_STATE/kafka/server.properties" \
		</dev/null >"$INFRA_STATE/kafka.log" 2>&1 &
	echo $! >"$INFRA_STATE/kafka.pid"
}

# infra_jaeger_version: the jaeger module version pinned in tools/jaeger/go.mod (a module of its own:
# jaeger v1.76.0 does not compile against the otelhttp that Helm needs in tools/go.mod).
infra_jaeger_version() {
	awk '$1 == "github.com/jaegertracing/jaeger" { print $2; exit }' "$INFRA_ROOT/tools/jaeger/go.mod"
}

# infra_build_jaeger: builds the jaeger binary into the cache unless it is there already.
# Runs in the background while Kafka boots; the compiler's output goes to
# $INFRA_STATE/jaeger-build.log.
infra_build_jaeger() {
	local bin=$INFRA_JAEGER_BIN start
	[[ -x $bin ]] && return 0
	mkdir -p "$(dirname "$bin")"
	start=$SECONDS
	infra_log "building jaeger $INFRA_JAEGER_VERSION into $bin (once; several minutes on a cold build cache)"
	# A private temp name, then rename: concurrent runs never see half a binary.
	if ! go -C "$INFRA_ROOT/tools/jaeger" build -o "$bin.partial.$$" github.com/jaegertracing/jaeger/cmd/jaeger \
		>"$INFRA_STATE/jaeger-build.log" 2>&1; then
		rm -f "$bin.partial.$$"
		infra_show_log_tail "$INFRA_STATE/jaeger-build.log"
		return 1
	fi
	mv -f "$bin.partial.$$" "$bin"
	infra_log "jaeger built in $((SECONDS - start))s"
}

# infra_jaeger_write_config: a minimal Jaeger v2 (OpenTelemetry Collector) configuration. Only
# the extensions listed under service start, so the health check, pprof, zpages, expvar and
# remote sampling listeners of the built-in all-in-one configuration are absent; the
# collector's own metrics endpoint (0.0.0.0:8888 by default) is off (level none, no readers).
infra_jaeger_write_config() {
	mkdir -p "$INFRA_STATE/jaeger"
	cat >"$INFRA_STATE/jaeger/config.yaml" <<EOF
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
      readers: []
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    # Its own spans would land in the store the tests search.
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:$INFRA_JAEGER_QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:$INFRA_JAEGER_QUERY_GRPC_PORT

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$INFRA_JAEGER_OTLP_GRPC_PORT
      http:
        endpoint: 127.0.0.1:$INFRA_JAEGER_OTLP_HTTP_PORT

processors:
  # Short, so that a test finds its spans soon after its exporter flushed them.
  batch:
    timeout: 100ms

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
}

infra_start_jaeger() {
	infra_jaeger_write_config
	infra_log "starting Jaeger $INFRA_JAEGER_VERSION: OTLP gRPC 127.0.0.1:$INFRA_JAEGER_OTLP_GRPC_PORT, OTLP HTTP :$INFRA_JAEGER_OTLP_HTTP_PORT, query :$INFRA_JAEGER_QUERY_PORT (gRPC :$INFRA_JAEGER_QUERY_GRPC_PORT)"
	nohup "$INFRA_JAEGER_BIN" --config "$INFRA_STATE/jaeger/config.yaml" \
		</dev/null >"$INFRA_STATE/jaeger.log" 2>&1 &
	echo $! >"$INFRA_STATE/jaeger.pid"
	INFRA_JAEGER_STARTED=$SECONDS
}

# infra_wait_jaeger: until the query API answers GET /api/services.
infra_wait_jaeger() {
	local timeout=${PROJECTOR_JAEGER_START_TIMEOUT:-60} deadline
	deadline=$((SECONDS + timeout))
	until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$INFRA_JAEGER_QUERY_PORT/api/services" 2>/dev/null; do
		if ! infra_pid_alive "$INFRA_STATE/jaeger.pid" "$INFRA_STATE/jaeger/config.yaml"; then
			infra_show_log_tail "$INFRA_STATE/jaeger.log"
			infra_die "Jaeger exited before its query API answered (log: $INFRA_STATE/jaeger.log)"
		fi
		if ((SECONDS >= deadline)); then
			infra_show_log_tail "$INFRA_STATE/jaeger.log"
			infra_die "Jaeger's query API on port $INFRA_JAEGER_QUERY_PORT did not answer within ${timeout}s (log: $INFRA_STATE/jaeger.log)"
		fi
		sleep 0.2
	done
	infra_log "Jaeger ready $((SECONDS - INFRA_JAEGER_STARTED))s after start; log: $INFRA_STATE/jaeger.log"
}

infra_start_redis() {
	mkdir -p "$INFRA_STATE/redis"
	infra_log "starting Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$INFRA_REDIS_PORT"
	redis-server --port "$INFRA_REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
		--daemonize yes --pidfile "$INFRA_STATE/redis.pid" --logfile "$INFRA_STATE/redis.log" \
		--dir "$INFRA_STATE/redis" >/dev/null ||
		infra_die "redis-server failed to start on port $INFRA_REDIS_PORT (see $INFRA_STATE/redis.log)"
}

# infra_build_probe compiles the Kafka readiness probe while the JVM boots.
infra_build_probe() {
	(cd "$INFRA_ROOT" && go build -o "$INFRA_STATE/kafkaready" ./internal/testenv/cmd/kafkaready)
}

infra_wait_kafka() {
	local timeout=${PROJECTOR_KAFKA_START_TIMEOUT:-120} deadline
	deadline=$((SECONDS + timeout))
	while ! infra_port_busy "$INFRA_KAFKA_PORT"; do
		if ! infra_pid_alive "$INFRA_STATE/kafka.pid" "$INFRA_STATE/kafka/server.properties"; then
			infra_show_log_tail "$INFRA_STATE/kafka.log"
			infra_die "Kafka exited before listening on port $INFRA_KAFKA_PORT (log: $INFRA_STATE/kafka.log)"
		fi
		if ((SECONDS >= deadline)); then
			infra_show_log_tail "$INFRA_STATE/kafka.log"
			infra_die "Kafka did not listen on port $INFRA_KAFKA_PORT within ${timeout}s (log: $INFRA_STATE/kafka.log)"
		fi
		sleep 0.5
	done
	local left=$((deadline - SECONDS))
	((left < 10)) && left=10
	if ! "$INFRA_STATE/kafkaready" -seeds "127.0.0.1:$INFRA_KAFKA_PORT" -timeout "${left}s" >&2; then
		infra_show_log_tail "$INFRA_STATE/kafka.log"
		infra_die "Kafka on port $INFRA_KAFKA_PORT did not answer metadata requests within ${timeout}s (log: $INFRA_STATE/kafka.log)"
	fi
	# The SASL_SSL listener with both mechanisms: TLS against the CA, SCRAM with the user.
	local mech
	for mech in PLAIN SCRAM-SHA-256 SCRAM-SHA-512; do
		if ! INFRA_KAFKA_SCRAM_PASSWORD=$INFRA_KAFKA_SCRAM_PASSWORD \
			"$INFRA_STATE/kafkaready" -seeds "127.0.0.1:$INFRA_KAFKA_SASL_SSL_PORT" -timeout 20s \
			-ca-file "$INFRA_STATE/kafka/tls/ca.pem" -sasl "$mech" -user "$INFRA_KAFKA_SCRAM_USER" \
			-password-env INFRA_KAFKA_SCRAM_PASSWORD >&2; then
			infra_show_log_tail "$INFRA_STATE/kafka.log"
			infra_die "Kafka's SASL_SSL listener on port $INFRA_KAFKA_SASL_SSL_PORT did not answer with $mech over TLS (log: $INFRA_STATE/kafka.log)"
		fi
	done
	# The SSL listener with the client certificate (mutual TLS).
	local tls=$INFRA_STATE/kafka/tls
	if ! "$INFRA_STATE/kafkaready" -seeds "127.0.0.1:$INFRA_KAFKA_MTLS_PORT" -timeout 20s \
		-ca-file "$tls/ca.pem" -cert-file "$tls/client.pem" -key-file "$tls/client.key" >&2; then
		infra_show_log_tail "$INFRA_STATE/kafka.log"
		infra_die "Kafka's SSL (mTLS) listener on port $INFRA_KAFKA_MTLS_PORT did not answer with the client certificate (log: $INFRA_STATE/kafka.log)"
	fi
	# The OAUTHBEARER listener, with an unsecured JWT read from a file.
	if ! "$INFRA_STATE/kafkaready" -seeds "127.0.0.1:$INFRA_KAFKA_OAUTH_PORT" -timeout 20s \
		-ca-file "$tls/ca.pem" -sasl OAUTHBEARER -token-file "$tls/probe.jwt" >&2; then
		infra_show_log_tail "$INFRA_STATE/kafka.log"
		infra_die "Kafka's OAUTHBEARER listener on port $INFRA_KAFKA_OAUTH_PORT did not answer over TLS (log: $INFRA_STATE/kafka.log)"
	fi
}

infra_wait_redis() {
	local i
	for ((i = 0; i < 100; i++)); do
		[[ $(redis-cli -h 127.0.0.1 -p "$INFRA_REDIS_PORT" ping 2>/dev/null) == PONG ]] && return
		sleep 0.1
	done
	infra_show_log_tail "$INFRA_STATE/redis.log"
	infra_die "Redis on port $INFRA_REDIS_PORT did not answer PING within 10s"
}

# infra_java_producer_plan: javac and Maven for building internal/javaproducer (the official
# Java producer as one jar, for the placement tests). infra_plan installs Java's runtime only.
# Without them the build is skipped: the tests that need the jar then skip, or fail under
# PROJECTOR_REQUIRE_REAL=1 saying what is missing. Sets INFRA_JAVA_PRODUCER_MODE (build|off).
infra_java_producer_plan() {
	INFRA_JAVA_PRODUCER_MODE=build
	command -v javac >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 && return
	if infra_can_apt; then
		infra_log "installing a Java 17 JDK and Maven with apt-get (to build internal/javaproducer)"
		infra_apt_install openjdk-17-jdk-headless maven && return
	fi
	infra_log "no javac or mvn: the Java producer is not built and its tests skip (Debian: apt-get install openjdk-17-jdk-headless maven)"
	INFRA_JAVA_PRODUCER_MODE=off
}

# infra_java_producer_jar: prints the path of the Java producer's jar, building it with Maven into
# $INFRA_CACHE_DIR/javaproducer/ unless a jar of the same pom and sources is there already (its
# name carries their hash, so a warm run only hashes a few files). Maven's build directory is a
# temp dir, so the work tree stays clean and concurrent runs never share one.
infra_java_producer_jar() {
	local src=$INFRA_ROOT/internal/javaproducer dir=$INFRA_CACHE_DIR/javaproducer hash jar work start
	hash=$(cd "$src" && find pom.xml src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
	jar=$dir/javaproducer-$hash.jar
	if [[ -f $jar ]]; then
		echo "$jar"
		return
	fi
	command -v mvn >/dev/null 2>&1 || {
		infra_log "Maven (mvn) is needed to build internal/javaproducer"
		return 1
	}
	work=$(mktemp -d)
	start=$SECONDS
	infra_log "building the Java producer (internal/javaproducer, kafka-clients) into $jar"
	if ! (cd "$src" && mvn -q -B package -Djavaproducer.buildDir="$work/target" >"$work/mvn.log" 2>&1); then
		infra_show_log_tail "$work/mvn.log"
		rm -rf "$work"
		infra_log "Maven could not build internal/javaproducer (log above)"
		return 1
	fi
	mkdir -p "$dir"
	# A private temp name in the same directory, then rename: no run sees half a jar.
	if ! { cp "$work/target/javaproducer.jar" "$jar.partial.$$" && mv -f "$jar.partial.$$" "$jar"; }; then
		rm -rf "$work" "$jar.partial.$$"
		return 1
	fi
	rm -rf "$work"
	# Jars of older sources, once no run of the last day can still be using them.
	find "$dir" -name 'javaproducer-*.jar' ! -name "${jar##*/}" -mmin +1440 -delete 2>/dev/null || true
	infra_log "Java producer built in $((SECONDS - start))s"
	echo "$jar"
}

# infra_up starts what infra_plan chose to run natively, waits until it answers and writes
# $INFRA_STATE/env. Needs INFRA_STATE and the *_PORT_DEFAULT variables (INFRA_JAEGER_PORT_DEFAULT
# is the first of Jaeger's four consecutive ports).
infra_up() {
	mkdir -p "$INFRA_STATE"
	infra_plan
	infra_java_producer_plan
	local probe_pid='' jaeger_build_pid='' java_producer_pid=''
	# The env file carries the SCRAM password: readable by its owner only.
	(umask 077 && : >"$INFRA_STATE/env")
	# All ports are chosen before anything starts, so a busy port fails fast.
	if [[ $INFRA_KAFKA_MODE == native ]]; then
		INFRA_KAFKA_PORT=$(infra_pick_port "$INFRA_KAFKA_PORT_DEFAULT" PROJECTOR_KAFKA_PORT)
		INFRA_KAFKA_CONTROLLER_PORT=$(infra_pick_port "$((INFRA_KAFKA_PORT + 1))" PROJECTOR_KAFKA_CONTROLLER_PORT "$INFRA_KAFKA_PORT")
		INFRA_KAFKA_SASL_SSL_PORT=$(infra_pick_port "$((INFRA_KAFKA_CONTROLLER_PORT + 1))" PROJECTOR_KAFKA_SASL_SSL_PORT \
			"$INFRA_KAFKA_PORT" "$INFRA_KAFKA_CONTROLLER_PORT")
		INFRA_KAFKA_MTLS_PORT=$(infra_pick_port "$((INFRA_KAFKA_SASL_SSL_PORT + 1))" PROJECTOR_KAFKA_MTLS_PORT \
			"$INFRA_KAFKA_PORT" "$INFRA_KAFKA_CONTROLLER_PORT" "$INFRA_KAFKA_SASL_SSL_PORT")
		INFRA_KAFKA_OAUTH_PORT=$(infra_pick_port "$((INFRA_KAFKA_MTLS_PORT + 1))" PROJECTOR_KAFKA_OAUTH_PORT \
			"$INFRA_KAFKA_PORT" "$INFRA_KAFKA_CONTROLLER_PORT" "$INFRA_KAFKA_SASL_SSL_PORT" "$INFRA_KAFKA_MTLS_PORT")
		INFRA_KAFKA_OAUTH_REAUTH_MS=${PROJECTOR_KAFKA_OAUTH_REAUTH_MS:-10000}
		[[ $INFRA_KAFKA_OAUTH_REAUTH_MS =~ ^[1-9][0-9]*$ ]] ||
			infra_die "PROJECTOR_KAFKA_OAUTH_REAUTH_MS=$INFRA_KAFKA_OAUTH_REAUTH_MS is not a positive number of milliseconds"
	fi
	local kafka_ports=("${INFRA_KAFKA_PORT:-}" "${INFRA_KAFKA_CONTROLLER_PORT:-}" "${INFRA_KAFKA_SASL_SSL_PORT:-}"
		"${INFRA_KAFKA_MTLS_PORT:-}" "${INFRA_KAFKA_OAUTH_PORT:-}")
	if [[ $INFRA_REDIS_MODE == native ]]; then
		INFRA_REDIS_PORT=$(infra_pick_port "$INFRA_REDIS_PORT_DEFAULT" PROJECTOR_REDIS_PORT "${kafka_ports[@]}")
	fi
	if [[ $INFRA_JAEGER_MODE == native ]]; then
		local taken=("${kafka_ports[@]}" "${INFRA_REDIS_PORT:-}")
		INFRA_JAEGER_OTLP_GRPC_PORT=$(infra_pick_port "$INFRA_JAEGER_PORT_DEFAULT" PROJECTOR_JAEGER_OTLP_GRPC_PORT "${taken[@]}")
		taken+=("$INFRA_JAEGER_OTLP_GRPC_PORT")
		INFRA_JAEGER_OTLP_HTTP_PORT=$(infra_pick_port "$((INFRA_JAEGER_OTLP_GRPC_PORT + 1))" PROJECTOR_JAEGER_OTLP_HTTP_PORT "${taken[@]}")
		taken+=("$INFRA_JAEGER_OTLP_HTTP_PORT")
		INFRA_JAEGER_QUERY_PORT=$(infra_pick_port "$((INFRA_JAEGER_OTLP_HTTP_PORT + 1))" PROJECTOR_JAEGER_QUERY_PORT "${taken[@]}")
		taken+=("$INFRA_JAEGER_QUERY_PORT")
		INFRA_JAEGER_QUERY_GRPC_PORT=$(infra_pick_port "$((INFRA_JAEGER_QUERY_PORT + 1))" PROJECTOR_JAEGER_QUERY_GRPC_PORT "${taken[@]}")
		INFRA_JAEGER_VERSION=$(infra_jaeger_version)
		[[ -n $INFRA_JAEGER_VERSION ]] || infra_die "tools/jaeger/go.mod does not pin github.com/jaegertracing/jaeger"
		INFRA_JAEGER_BIN=$INFRA_CACHE_DIR/jaeger-$INFRA_JAEGER_VERSION/jaeger
		# Compiles (once) while the JVM boots.
		infra_build_jaeger &
		jaeger_build_pid=$!
	fi
	if [[ $INFRA_KAFKA_MODE == native ]]; then
		infra_start_kafka
		infra_build_probe &
		probe_pid=$!
	fi
	# Builds while the broker boots; after infra_start_kafka so that two Mavens never fill
	# ~/.m2 at once.
	if [[ $INFRA_JAVA_PRODUCER_MODE == build ]]; then
		infra_java_producer_jar >"$INFRA_STATE/javaproducer.path" &
		java_producer_pid=$!
	fi
	if [[ $INFRA_REDIS_MODE == native ]]; then
		infra_start_redis
		infra_wait_redis
		echo "export PROJECTOR_REDIS_ADDR=127.0.0.1:$INFRA_REDIS_PORT" >>"$INFRA_STATE/env"
	else
		infra_log "redis-server not available: the tests start Redis with testcontainers (Docker)"
	fi
	if [[ -n $probe_pid ]]; then
		wait "$probe_pid" || infra_die "building internal/testenv/cmd/kafkaready failed"
		infra_wait_kafka
		{
			echo "export PROJECTOR_KAFKA_SEEDS=127.0.0.1:$INFRA_KAFKA_PORT"
			echo "export PROJECTOR_KAFKA_SASL_SSL_SEEDS=127.0.0.1:$INFRA_KAFKA_SASL_SSL_PORT"
			echo "export PROJECTOR_KAFKA_SCRAM_USER=$INFRA_KAFKA_SCRAM_USER"
			echo "export PROJECTOR_KAFKA_SCRAM_PASSWORD=$INFRA_KAFKA_SCRAM_PASSWORD"
			echo "export PROJECTOR_KAFKA_CA_FILE=$INFRA_STATE/kafka/tls/ca.pem"
			echo "export PROJECTOR_KAFKA_MTLS_SEEDS=127.0.0.1:$INFRA_KAFKA_MTLS_PORT"
			echo "export PROJECTOR_KAFKA_CLIENT_CERT_FILE=$INFRA_STATE/kafka/tls/client.pem"
			echo "export PROJECTOR_KAFKA_CLIENT_KEY_FILE=$INFRA_STATE/kafka/tls/client.key"
			echo "export PROJECTOR_KAFKA_OAUTH_SEEDS=127.0.0.1:$INFRA_KAFKA_OAUTH_PORT"
			echo "export PROJECTOR_KAFKA_OAUTH_REAUTH_MS=$INFRA_KAFKA_OAUTH_REAUTH_MS"
		} >>"$INFRA_STATE/env"
	elif [[ $INFRA_KAFKA_MODE == docker ]]; then
		infra_log "Java/Maven not available: the tests start Kafka with testcontainers (Docker)"
	fi
	if [[ -n $jaeger_build_pid ]]; then
		wait "$jaeger_build_pid" || infra_die "building jaeger $INFRA_JAEGER_VERSION failed (log: $INFRA_STATE/jaeger-build.log)"
		infra_start_jaeger
		infra_wait_jaeger
		{
			echo "export PROJECTOR_OTLP_GRPC_ENDPOINT=127.0.0.1:$INFRA_JAEGER_OTLP_GRPC_PORT"
			echo "export PROJECTOR_OTLP_HTTP_ENDPOINT=http://127.0.0.1:$INFRA_JAEGER_OTLP_HTTP_PORT"
			echo "export PROJECTOR_JAEGER_QUERY_URL=http://127.0.0.1:$INFRA_JAEGER_QUERY_PORT"
		} >>"$INFRA_STATE/env"
	elif [[ $INFRA_JAEGER_MODE == off ]]; then
		infra_log "PROJECTOR_NO_JAEGER=1: Jaeger is not started"
		echo "export PROJECTOR_NO_JAEGER=1" >>"$INFRA_STATE/env"
	fi
	if [[ -n $java_producer_pid ]]; then
		wait "$java_producer_pid" || infra_die "building internal/javaproducer failed (Maven's log above)"
		echo "export PROJECTOR_JAVA_PRODUCER_JAR=$(<"$INFRA_STATE/javaproducer.path")" >>"$INFRA_STATE/env"
	fi
	echo "export PROJECTOR_REQUIRE_REAL=1" >>"$INFRA_STATE/env"
}

# infra_stop_pid PIDFILE PATTERN NAME: TERM, wait up to 15s, then KILL; only our own process.
infra_stop_pid() {
	local pidfile=$1 pattern=$2 name=$3 pid i
	if ! infra_pid_alive "$pidfile" "$pattern"; then
		rm -f "$pidfile"
		return 0
	fi
	pid=$(<"$pidfile")
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		infra_pid_alive "$pidfile" "$pattern" || break
		sleep 0.1
	done
	if infra_pid_alive "$pidfile" "$pattern"; then
		infra_log "$name (pid $pid) did not stop within 15s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
}

# infra_down stops the servers and removes their data, keeping the logs.
infra_down() {
	infra_stop_pid "$INFRA_STATE/jaeger.pid" "$INFRA_STATE/jaeger/config.yaml" Jaeger
	infra_stop_pid "$INFRA_STATE/kafka.pid" "$INFRA_STATE/kafka/server.properties" Kafka
	infra_stop_pid "$INFRA_STATE/redis.pid" redis-server Redis
	rm -rf "$INFRA_STATE/kafka/data" "$INFRA_STATE/redis" "$INFRA_STATE/kafkaready"
	rm -f "$INFRA_STATE/env"
}
