package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/testcontainers/testcontainers-go"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
)

// Image defaults; keep the Kafka release in step with scripts/lib/infra.sh.
const (
	defaultKafkaImage = "apache/kafka:4.3.1"
	defaultRedisImage = "redis:7"
)

const (
	kafkaContainerPort = "9093/tcp"
	kafkaStartScript   = "/tmp/testenv-start.sh"
)

// startKafkaContainer runs a single-node KRaft broker from the apache/kafka image through the
// core GenericContainer (the testcontainers kafka module lags the core). The advertised
// listener must name the host's mapped port, known only once the container runs, so the
// container waits for a start script that a post-start hook copies in.
func startKafkaContainer(ctx context.Context) ([]string, error) {
	img := os.Getenv(EnvKafkaImage)
	if img == "" {
		img = defaultKafkaImage
	}
	req := testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:        img,
			ExposedPorts: []string{kafkaContainerPort},
			Env: map[string]string{
				"CLUSTER_ID":                                             "5L6g3nShT-eMCtK--X86sw",
				"KAFKA_NODE_ID":                                          "1",
				"KAFKA_PROCESS_ROLES":                                    "broker,controller",
				"KAFKA_LISTENERS":                                        "PLAINTEXT://0.0.0.0:9093,BROKER://0.0.0.0:9092,CONTROLLER://0.0.0.0:9094",
				"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":                   "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
				"KAFKA_INTER_BROKER_LISTENER_NAME":                       "BROKER",
				"KAFKA_CONTROLLER_LISTENER_NAMES":                        "CONTROLLER",
				"KAFKA_CONTROLLER_QUORUM_VOTERS":                         "1@localhost:9094",
				"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":                 "1",
				"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR":         "1",
				"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":                    "1",
				"KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
				"KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR":            "1",
				"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":                 "0",
				"KAFKA_NUM_PARTITIONS":                                   "3",
				"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                        "false",
			},
			Entrypoint: []string{"sh"},
			Cmd:        []string{"-c", "while [ ! -f " + kafkaStartScript + " ]; do sleep 0.1; done; exec sh " + kafkaStartScript},
			LifecycleHooks: []testcontainers.ContainerLifecycleHooks{{
				PostStarts: []testcontainers.ContainerHook{copyKafkaStartScript},
			}},
		},
		Started: true,
	}
	c, err := testcontainers.GenericContainer(ctx, req)
	if c != nil {
		onShutdown(func() { _ = testcontainers.TerminateContainer(c) })
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", img, err)
	}
	endpoint, err := c.PortEndpoint(ctx, kafkaContainerPort, "")
	if err != nil {
		return nil, fmt.Errorf("kafka endpoint: %w", err)
	}
	return []string{endpoint}, nil
}

func copyKafkaStartScript(ctx context.Context, c testcontainers.Container) error {
	host, err := c.Host(ctx)
	if err != nil {
		return err
	}
	port, err := c.MappedPort(ctx, kafkaContainerPort)
	if err != nil {
		return err
	}
	inspect, err := c.Inspect(ctx)
	if err != nil {
		return err
	}
	script := fmt.Sprintf("export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://%s:%s,BROKER://%s:9092\nexec /etc/kafka/docker/run\n",
		host, port.Port(), inspect.Config.Hostname)
	return c.CopyToContainer(ctx, []byte(script), kafkaStartScript, 0o755)
}

func startRedisContainer(ctx context.Context) (string, error) {
	img := os.Getenv(EnvRedisImage)
	if img == "" {
		img = defaultRedisImage
	}
	c, err := tcredis.Run(ctx, img)
	if c != nil {
		onShutdown(func() { _ = testcontainers.TerminateContainer(c) })
	}
	if err != nil {
		return "", fmt.Errorf("start %s: %w", img, err)
	}
	uri, err := c.ConnectionString(ctx)
	if err != nil {
		return "", fmt.Errorf("redis endpoint: %w", err)
	}
	return strings.TrimPrefix(uri, "redis://"), nil
}
