package redischeckpoint

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ErrEvictingServer reports a Redis whose maxmemory-policy may evict keys:
// an evicted cursor, fence or read-model key would silently undo applied
// events. See [Store.CheckServer].
var ErrEvictingServer = errors.New("redischeckpoint: Redis may evict keys (maxmemory-policy is not noeviction)")

// CheckServer checks that the Redis behind the Store keeps what the
// delivery contract needs, on every master of a Cluster: keys must never
// be evicted (maxmemory-policy noeviction, else [ErrEvictingServer]), and
// acknowledged writes should survive a restart (appendonly yes: without it
// a restart or a failover loses recent writes; the Kafka runner then
// detects the loss and stops the affected partitions, but the read model
// must be replayed). What cannot be checked (INFO refused by an ACL, a
// managed service that hides it), a server without AOF and, with
// Config.WaitReplicas set, a master with fewer connected replicas are
// returned as warnings.
func (s *Store) CheckServer(ctx context.Context) (warnings []string, err error) {
	check := func(ctx context.Context, c redis.Cmdable) ([]string, error) {
		info, err := c.Info(ctx, "memory", "persistence", "server", "replication").Result()
		if err != nil {
			return []string{fmt.Sprintf("redischeckpoint: cannot check the Redis server's eviction policy and persistence (INFO: %v)", err)}, nil
		}
		fields := parseInfo(info)
		addr := fields["tcp_port"]
		if addr != "" {
			addr = " (port " + addr + ")"
		}
		var warn []string
		switch policy, ok := fields["maxmemory_policy"]; {
		case !ok:
			warn = append(warn, "redischeckpoint: cannot check the Redis server's maxmemory-policy"+addr+": INFO does not show it")
		case policy != "noeviction":
			return nil, fmt.Errorf("%w: the server%s has maxmemory-policy %s; set it to noeviction (an evicted cursor or read-model key would silently undo applied events)",
				ErrEvictingServer, addr, policy)
		}
		if aof, ok := fields["aof_enabled"]; ok && aof != "1" {
			warn = append(warn, "redischeckpoint: the Redis server"+addr+" runs without AOF persistence (appendonly no): "+
				"a restart or failover loses recent writes; the runner detects the loss and stops the affected partitions until the projection is replayed")
		}
		if w := s.replicationWarning(fields, addr); w != "" {
			warn = append(warn, w)
		}
		return warn, nil
	}
	if cluster, ok := s.client.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		err = cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			w, err := check(ctx, c)
			mu.Lock()
			warnings = append(warnings, w...)
			mu.Unlock()
			return err
		})
		return warnings, err
	}
	return check(ctx, s.client)
}

func parseInfo(info string) map[string]string {
	out := map[string]string{}
	for line := range strings.Lines(info) {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out
}
