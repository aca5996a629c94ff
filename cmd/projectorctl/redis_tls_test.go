package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/projectorconfig"
	"github.com/projector-dev/projector/redischeckpoint"
)

// projectorctl on the TLS-only Redis set of scripts/ha.sh, through
// Sentinel (its own ACL user for the Sentinels) and on the Cluster (with
// the client certificate it requires), with the ACL user and every
// setting, the passwords included, from PROJECTOR_REDIS_* variables:
// status and parked list see the projection a replica runs there; with a
// wrong CA the command fails naming the certificate and showing no
// password.
func TestCtlOnRedisSentinelAndClusterOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs on real servers")
	}
	r := testenv.HARedisTLSEnv(t)
	for _, c := range []struct {
		name string
		cfg  redischeckpoint.ClientConfig
		env  map[string]string
	}{
		{"sentinel", redischeckpoint.ClientConfig{Addrs: r.Sentinels, MasterName: r.MasterName,
			SentinelUsername: r.SentinelUsername, SentinelPassword: r.SentinelPassword,
			Username: r.Username, Password: r.Password, TLS: true, CAFile: r.CAFile},
			map[string]string{"PROJECTOR_REDIS_ADDRS": strings.Join(r.Sentinels, ","), "PROJECTOR_REDIS_SENTINEL_MASTER": r.MasterName,
				"PROJECTOR_REDIS_SENTINEL_USERNAME": r.SentinelUsername, "PROJECTOR_REDIS_SENTINEL_PASSWORD": r.SentinelPassword,
				"PROJECTOR_REDIS_USERNAME": r.Username, "PROJECTOR_REDIS_PASSWORD": r.Password,
				"PROJECTOR_REDIS_TLS": "true", "PROJECTOR_REDIS_TLS_CA_FILE": r.CAFile}},
		{"cluster", redischeckpoint.ClientConfig{Addrs: r.Cluster, Cluster: true, Username: r.Username, Password: r.Password,
			TLS: true, CAFile: r.CAFile, CertFile: r.CertFile, KeyFile: r.KeyFile},
			map[string]string{"PROJECTOR_REDIS_ADDRS": strings.Join(r.Cluster, ","), "PROJECTOR_REDIS_CLUSTER": "true",
				"PROJECTOR_REDIS_USERNAME": r.Username, "PROJECTOR_REDIS_PASSWORD": r.Password,
				"PROJECTOR_REDIS_TLS_CA_FILE": r.CAFile, "PROJECTOR_REDIS_TLS_CERT_FILE": r.CertFile,
				"PROJECTOR_REDIS_TLS_KEY_FILE": r.KeyFile}},
	} {
		t.Run(c.name, func(t *testing.T) {
			client, err := redischeckpoint.NewClient(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			f := newFixtureOn(t, &testenv.RedisEnv{Client: client, Real: true, Kind: "private"})
			f.produce(4, 2)
			f.start(false)
			f.waitCounts(time.Minute)
			time.Sleep(500 * time.Millisecond) // offsets committed

			for _, v := range projectorconfig.Connection() {
				t.Setenv(v.Env, "")
			}
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			ctl := func(args ...string) (int, string, string) {
				var stdout, stderr bytes.Buffer
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
				defer cancel()
				code := run(ctx, append(args, "--brokers", strings.Join(f.kafka.Seeds, ","), "--topic", f.store.Config().Topic,
					"--namespace", f.ns, "--by", "tester"), strings.NewReader(""), &stdout, &stderr)
				return code, stdout.String(), stderr.String()
			}
			code, out, errOut := ctl("status", f.name, "-o", "json")
			if code != exitOK {
				t.Fatalf("status exit %d: %s", code, errOut)
			}
			var st Status
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatalf("status JSON: %v\n%s", err, out)
			}
			if st.State != "running" || len(st.Members) != 1 || len(st.Partitions) != 4 {
				t.Errorf("status = %+v", st)
			}
			if code, out, errOut := ctl("parked", "list", f.name, "-o", "json"); code != exitOK || strings.TrimSpace(out) != "[]" {
				t.Errorf("parked list = %d %q %s", code, out, errOut)
			}

			t.Setenv("PROJECTOR_REDIS_TLS_CA_FILE", testenv.ForeignCA(t))
			code, _, errOut = ctl("parked", "list", f.name)
			if code == exitOK || !strings.Contains(errOut, "certificate signed by unknown authority") {
				t.Errorf("parked list with a wrong CA: exit %d, want a failure naming the certificate:\n%s", code, errOut)
			}
			if strings.Contains(errOut, r.Password) || strings.Contains(errOut, r.SentinelPassword) {
				t.Errorf("a password shows in the failure:\n%s", errOut)
			}
			t.Logf("with a wrong CA: exit %d: %s", code, strings.TrimSpace(errOut))
		})
	}
}
