// Package kafkaprobe asks a Kafka cluster who it is: its cluster ID, its brokers and the
// Kafka release its API versions match. It is shared by the testenv harness and the readiness
// probe that scripts/test.sh runs while the broker boots, and imports nothing heavy so that the
// probe builds in seconds.
package kafkaprobe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Info is what a cluster tells about itself.
type Info struct {
	ClusterID string
	Brokers   int
	// Version is franz-go's guess of the Kafka release from the API versions the first
	// broker supports, e.g. "v4.3" or "at least v4.4".
	Version string
	// MetadataVersion is the finalized metadata.version feature level (KRaft only), or -1.
	MetadataVersion int16
}

// IsKfake reports whether the cluster is franz-go's in-process fake, which names its cluster
// "kfake".
func (i Info) IsKfake() bool { return i.ClusterID == "kfake" }

// Major returns the major release from Version ("v4.3" and "at least v4.3" give 4), or -1.
func (i Info) Major() int {
	v := i.Version
	if j := strings.LastIndex(v, "v"); j >= 0 {
		v = v[j+1:]
	}
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil {
		return -1
	}
	return major
}

func (i Info) String() string {
	return fmt.Sprintf("cluster %s, %d broker(s), Kafka %s, metadata.version %d",
		i.ClusterID, i.Brokers, i.Version, i.MetadataVersion)
}

// Probe asks the cluster at seeds once. Extra options are passed to the client.
func Probe(ctx context.Context, seeds []string, opts ...kgo.Opt) (Info, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.DialTimeout(3 * time.Second),
		kgo.RequestRetries(1),
	}, opts...)...)
	if err != nil {
		return Info{}, fmt.Errorf("kafkaprobe: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("kafkaprobe: metadata: %w", err)
	}
	if len(md.Brokers) == 0 {
		return Info{}, errors.New("kafkaprobe: metadata lists no brokers")
	}
	versions, err := adm.ApiVersions(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("kafkaprobe: api versions: %w", err)
	}
	sorted := versions.Sorted()
	if len(sorted) == 0 {
		return Info{}, errors.New("kafkaprobe: no broker answered api versions")
	}
	// Every broker of a test cluster runs the same release: the first one speaks for all.
	first := sorted[0]
	if first.Err != nil {
		return Info{}, fmt.Errorf("kafkaprobe: api versions of broker %d: %w", first.NodeID, first.Err)
	}
	info := Info{ClusterID: md.Cluster, Brokers: len(md.Brokers), MetadataVersion: -1, Version: first.VersionGuess()}
	for _, f := range first.Raw().FinalizedFeatures {
		if f.Name == "metadata.version" {
			info.MetadataVersion = f.MaxVersionLevel
		}
	}
	return info, nil
}

// Wait probes until the cluster answers or ctx ends, returning the last error then.
func Wait(ctx context.Context, seeds []string, opts ...kgo.Opt) (Info, error) {
	for {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := Probe(attempt, seeds, opts...)
		cancel()
		if err == nil {
			return info, nil
		}
		select {
		case <-ctx.Done():
			return Info{}, fmt.Errorf("kafkaprobe: %v not ready: %w (%w)", seeds, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
