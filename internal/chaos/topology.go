package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Topology names.
const (
	TopologySingle   = "single"          // one broker, one Redis (scripts/infra.sh)
	TopologySentinel = "kafka3+sentinel" // 3 brokers, RF 3; a Redis master, a replica, 3 Sentinels (scripts/ha.sh)
	TopologyCluster  = "kafka3+cluster"  // 3 brokers, RF 3; Redis Cluster of 3 masters (scripts/ha.sh)
)

// Topology says where a run's servers are and how the nemesis reaches
// them. Servers are killed and started only through Ctl, the control
// script that started them (scripts/ha.sh): the single-node servers of the
// test command are shared with other tests, so a run on them injects
// replica, network, admin and poison faults only.
type Topology struct {
	Name    string
	Brokers []string
	// KafkaNodes maps a broker's node ID to its name for Ctl ("kafka-2").
	KafkaNodes map[int32]string
	Redis      RedisTopology
	// Ctl is the control script: "<Ctl> kill NAME" SIGKILLs a server,
	// "<Ctl> start NAME" starts it again with its data. Empty: no server
	// faults.
	Ctl string
}

// RedisTopology is how the workers and the checker reach Redis.
type RedisTopology struct {
	// Addrs: the server (single), the Sentinels (MasterName set) or the
	// Cluster's masters (Cluster).
	Addrs      []string
	MasterName string
	Cluster    bool
	// Servers maps a data server's address to its name for Ctl
	// ("redis-1", "cluster-3"); the Sentinels are not listed.
	Servers map[string]string
}

// ServerFaults reports whether the nemesis may kill and start servers.
func (t Topology) ServerFaults() bool { return t.Ctl != "" }

// String describes the topology for a report.
func (t Topology) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: Kafka %s", t.Name, strings.Join(t.Brokers, ","))
	switch {
	case t.Redis.MasterName != "":
		fmt.Fprintf(&b, ", Redis master %q via Sentinels %s (servers %s)", t.Redis.MasterName, strings.Join(t.Redis.Addrs, ","), strings.Join(sortedKeys(t.Redis.Servers), ","))
	case t.Redis.Cluster:
		fmt.Fprintf(&b, ", Redis Cluster %s", strings.Join(t.Redis.Addrs, ","))
	default:
		fmt.Fprintf(&b, ", Redis %s", strings.Join(t.Redis.Addrs, ","))
	}
	if t.Ctl == "" {
		b.WriteString(" (shared servers: no server faults)")
	}
	return b.String()
}

// proxied are the addresses each replica reaches through proxies of its
// own: every broker and every Redis server and Sentinel.
func (t Topology) proxied() (kafka, rds []string) {
	kafka = append(kafka, t.Brokers...)
	rds = append(rds, t.Redis.Addrs...)
	if t.Redis.MasterName != "" {
		rds = append(rds, sortedKeys(t.Redis.Servers)...)
	}
	return kafka, rds
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SingleTopology is the test command's single-node servers.
func SingleTopology(brokers []string, redisAddr string) Topology {
	return Topology{Name: TopologySingle, Brokers: brokers, Redis: RedisTopology{Addrs: []string{redisAddr}}}
}

// HATopologyFromEnv reads the servers of scripts/ha.sh from its export
// lines (PROJECTOR_HA_*), with Redis through Sentinel (TopologySentinel)
// or the Cluster (TopologyCluster). ok is false when they are not set.
func HATopologyFromEnv(name string) (Topology, bool, error) {
	seeds := os.Getenv("PROJECTOR_HA_KAFKA_SEEDS")
	if seeds == "" {
		return Topology{}, false, nil
	}
	nodes, err := parseNamed(os.Getenv("PROJECTOR_HA_KAFKA_NODES"), "kafka")
	if err != nil {
		return Topology{}, true, fmt.Errorf("PROJECTOR_HA_KAFKA_NODES: %w", err)
	}
	t := Topology{Name: name, Brokers: SplitList(seeds), KafkaNodes: map[int32]string{}, Ctl: os.Getenv("PROJECTOR_HA_CTL")}
	for _, n := range nodes {
		id, _ := strconv.Atoi(strings.TrimPrefix(n, "kafka-"))
		t.KafkaNodes[int32(id)] = n
	}
	switch name {
	case TopologySentinel:
		servers, err := parseNamed(os.Getenv("PROJECTOR_HA_REDIS_NODES"), "redis")
		if err != nil {
			return Topology{}, true, fmt.Errorf("PROJECTOR_HA_REDIS_NODES: %w", err)
		}
		t.Redis = RedisTopology{Addrs: SplitList(os.Getenv("PROJECTOR_HA_REDIS_SENTINELS")),
			MasterName: os.Getenv("PROJECTOR_HA_REDIS_MASTER_NAME"), Servers: servers}
		if len(t.Redis.Addrs) == 0 || t.Redis.MasterName == "" || len(servers) == 0 {
			return Topology{}, true, errors.New("PROJECTOR_HA_REDIS_SENTINELS, _MASTER_NAME and _NODES are required")
		}
	case TopologyCluster:
		servers, err := parseNamed(os.Getenv("PROJECTOR_HA_REDIS_CLUSTER"), "cluster")
		if err != nil {
			return Topology{}, true, fmt.Errorf("PROJECTOR_HA_REDIS_CLUSTER: %w", err)
		}
		t.Redis = RedisTopology{Addrs: sortedKeys(servers), Cluster: true, Servers: servers}
		if len(servers) == 0 {
			return Topology{}, true, errors.New("PROJECTOR_HA_REDIS_CLUSTER is required")
		}
	default:
		return Topology{}, true, fmt.Errorf("unknown topology %q (%s or %s)", name, TopologySentinel, TopologyCluster)
	}
	return t, true, nil
}

// parseNamed parses "1=127.0.0.1:1,2=…" into address -> "<prefix>-1".
func parseNamed(s, prefix string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range SplitList(s) {
		id, addr, ok := strings.Cut(item, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("%q is not id=host:port", item)
		}
		out[addr] = prefix + "-" + id
	}
	return out, nil
}

// SplitList splits a comma-separated list, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// DialMap maps real addresses to the proxies of one replica.
type DialMap map[string]string

func (m DialMap) String() string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// ParseDialMap parses a worker's --dial flag: "from=to,…".
func ParseDialMap(s string) (DialMap, error) {
	m := DialMap{}
	for _, item := range SplitList(s) {
		from, to, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("dial map entry %q is not from=to", item)
		}
		m[from] = to
	}
	return m, nil
}

// dial connects to the proxy of addr. An address without a proxy is
// refused rather than dialled directly: a connection around the proxies
// would make the network faults silently miss it.
func (m DialMap) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	to, ok := m[addr]
	if !ok {
		return nil, fmt.Errorf("chaos: no proxy for %s (proxied: %s): the servers announce an address the suite does not know", addr, m)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, to)
}

// newRedisClient connects to the topology's Redis, through the proxies of
// dial (nil: directly).
func newRedisClient(t RedisTopology, dial DialMap) redis.UniversalClient {
	var dialer func(context.Context, string, string) (net.Conn, error)
	if len(dial) > 0 {
		dialer = dial.dial
	}
	switch {
	case t.MasterName != "":
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: t.MasterName, SentinelAddrs: t.Addrs, Dialer: dialer})
	case t.Cluster:
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: t.Addrs, Dialer: dialer})
	default:
		return redis.NewClient(&redis.Options{Addr: t.Addrs[0], Dialer: dialer})
	}
}

// redisFlags are a worker's flags for t.
func (t RedisTopology) flags() []string {
	args := []string{"--redis", strings.Join(t.Addrs, ",")}
	if t.MasterName != "" {
		args = append(args, "--redis-master", t.MasterName)
	}
	if t.Cluster {
		args = append(args, "--redis-cluster")
	}
	return args
}

// dataServer returns the address and Ctl name of the Redis server that
// holds key now: the Sentinels' master, or the Cluster master of key's
// slot.
func (t RedisTopology) dataServer(ctx context.Context, key string) (addr, name string, err error) {
	switch {
	case t.MasterName != "":
		for _, a := range t.Addrs {
			s := redis.NewSentinelClient(&redis.Options{Addr: a})
			hp, err2 := s.GetMasterAddrByName(ctx, t.MasterName).Result()
			_ = s.Close()
			if err2 == nil && len(hp) == 2 {
				addr = net.JoinHostPort(hp[0], hp[1])
				break
			}
			err = err2
		}
	case t.Cluster:
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: t.Addrs})
		defer c.Close()
		var node *redis.Client
		if node, err = c.MasterForKey(ctx, key); err == nil {
			addr = node.Options().Addr
		}
	default:
		addr = t.Addrs[0]
	}
	if addr == "" {
		return "", "", fmt.Errorf("no Redis server holds %s: %v", key, err)
	}
	return addr, t.Servers[addr], nil
}

// serverCtl runs the control script; one server fault at a time in this
// process, so concurrent runs on the same servers never take two of three
// brokers down at once.
var serverMu sync.Mutex

func runCtl(ctx context.Context, ctl string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute) // above ha.sh's own start timeout (3 min)
	defer cancel()
	out, err := exec.CommandContext(ctx, ctl, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", ctl, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// leaderOf returns the node ID leading partition p of topic.
func leaderOf(ctx context.Context, brokers []string, topic string, p int32) (int32, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return -1, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil {
		return -1, err
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		return -1, fmt.Errorf("metadata of %s: %v", topic, td.Err)
	}
	pd, ok := td.Partitions[p]
	if !ok || pd.Leader < 0 {
		return -1, fmt.Errorf("partition %d of %s has no leader", p, topic)
	}
	return pd.Leader, nil
}

// Cleanup deletes a run's topics (every topic whose name starts with
// topic), its consumer groups (every version's) and its Redis keys.
func Cleanup(ctx context.Context, t Topology, topic, namespace string) error {
	var errs []error
	if cl, err := kgo.NewClient(kgo.SeedBrokers(t.Brokers...)); err == nil {
		adm := kadm.NewClient(cl)
		if topics, err := adm.ListTopics(ctx); err == nil {
			var del []string
			for _, name := range topics.Names() {
				if strings.HasPrefix(name, topic) {
					del = append(del, name)
				}
			}
			if len(del) > 0 {
				_, _ = adm.DeleteTopics(ctx, del...)
			}
		}
		if groups, err := adm.ListGroups(ctx); err == nil {
			var del []string
			for _, g := range groups.Groups() {
				if strings.HasPrefix(g, GroupName(topic)) {
					del = append(del, g)
				}
			}
			if len(del) > 0 {
				if _, err := adm.DeleteGroups(ctx, del...); err != nil {
					errs = append(errs, fmt.Errorf("delete groups: %w", err))
				}
			}
		}
		cl.Close()
	}
	rc := newRedisClient(t.Redis, nil)
	defer rc.Close()
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, namespace+":*", 1000).Iterator()
		// One key per UNLINK (a Cluster refuses one across slots),
		// pipelined a thousand at a time: a billing run leaves 250,000.
		pipe := c.Pipeline()
		for iter.Next(ctx) {
			pipe.Unlink(ctx, iter.Val())
			if pipe.Len() >= 1000 {
				if _, err := pipe.Exec(ctx); err != nil {
					return err
				}
			}
		}
		if pipe.Len() > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	if cc, ok := rc.(*redis.ClusterClient); ok {
		errs = append(errs, cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) }))
	} else {
		errs = append(errs, scan(ctx, rc))
	}
	return errors.Join(errs...)
}
