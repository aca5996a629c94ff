package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// TestRebuildBesideTheLiveVersion is the blue/green rebuild under load:
// three worker processes serve month A of one tenant; then projectorctl
// rebuild --wait builds version 1 beside the live version 0 while month B of
// another tenant is appended and one worker is SIGKILLed mid-rebuild. The
// live version answers with month A complete in every sample taken during
// the rebuild; after the switch the live version is billing@v1 and equals
// the generator's ground truth for both months; after the grace period the
// keys and the consumer group of version 0 are gone.
func TestRebuildBesideTheLiveVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds projectorctl and runs three worker processes")
	}
	kafka, redisEnv := serversFromEnvironment(t)
	ctl := filepath.Join(t.TempDir(), "projectorctl")
	if out, err := exec.Command("go", "build", "-o", ctl, "github.com/projector-dev/projector/cmd/projectorctl").CombinedOutput(); err != nil {
		t.Fatalf("go build projectorctl: %v\n%s", err, out)
	}
	topic := kafka.TopicName(t, "mabis")
	ns := redisEnv.Prefix(t)
	setWorkerEnv(t, kafka, redisEnv, topic, ns, map[string]string{"PROJECTOR_KAFKA_SESSION_TIMEOUT": "6s"})
	group := os.Getenv("PROJECTOR_GROUP")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	events, err := kafkastore.New(ctx, kafkastore.Config{Guard: appendguard.NewMemory(), Seeds: kafka.Seeds, Topic: topic, Partitions: 6, ReplicationFactor: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	monthA, _ := mabis.ParseMonth("2026-03")
	monthB, _ := mabis.ParseMonth("2026-04")
	wantA, statsA, err := loadgen.Generate(ctx, events, loadgen.Config{Tenant: "netz-blue", Month: monthA, MaLos: 800, Seed: 21, Concurrency: 32})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("month A: %d streams, %d events", statsA.Streams, statsA.Events)
	rm, err := openReadModel(options{tenant: "netz-blue", month: monthA, projection: mabis.ProjectionName, namespace: ns}, redisEnv.Client)
	if err != nil {
		t.Fatal(err)
	}
	readerB, err := mabis.NewReader(rm.projection, "netz-green")
	if err != nil {
		t.Fatal(err)
	}

	type proc struct {
		cmd *exec.Cmd
		out *syncBuffer
	}
	var procsMu sync.Mutex
	var procs []proc
	startWorker := func() int {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envWorkerProcess+"=1", "PROJECTOR_PROJECTION="+mabis.ProjectionName, "OTEL_SDK_DISABLED=true")
		p := proc{cmd: cmd, out: &syncBuffer{}}
		cmd.Stdout, cmd.Stderr = p.out, p.out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procsMu.Lock()
		defer procsMu.Unlock()
		procs = append(procs, p)
		return len(procs) - 1
	}
	t.Cleanup(func() {
		procsMu.Lock()
		defer procsMu.Unlock()
		for _, p := range procs {
			_ = p.cmd.Process.Kill()
			_, _ = p.cmd.Process.Wait()
		}
		if t.Failed() {
			for i, p := range procs {
				t.Logf("worker %d output:\n%s", i, p.out.String())
			}
		}
	})
	for range 3 {
		startWorker()
	}
	liveReader := func(tenant *mabis.Reader) *mabis.Reader {
		r, err := tenant.Live(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	waitVerified := func(what string, x *loadgen.Expected, tenant *mabis.Reader) *mabis.Reader {
		t.Helper()
		var err error
		for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			r := liveReader(tenant)
			if err = x.Verify(ctx, r); err == nil {
				return r
			}
		}
		t.Fatalf("%s: the live read model differs from the ground truth: %v", what, err)
		return nil
	}
	if r := waitVerified("month A in version 0", wantA, rm.reader); r.ReadModel() != mabis.ProjectionName {
		t.Fatalf("live read model %s before any rebuild, want %s", r.ReadModel(), mabis.ProjectionName)
	}

	// Appends go on during the rebuild: month B of another tenant.
	var wantB *loadgen.Expected
	appended := make(chan error, 1)
	go func() {
		x, st, err := loadgen.Generate(ctx, events, loadgen.Config{Tenant: "netz-green", Month: monthB, MaLos: 300, Seed: 22, Concurrency: 4})
		if err == nil {
			t.Logf("month B appended during the rebuild: %d streams, %d events", st.Streams, st.Events)
		}
		wantB = x
		appended <- err
	}()

	// The live version is sampled the whole time: month A stays complete.
	var samples, versionsSeen atomic.Int64
	var seenMu sync.Mutex
	seen := map[string]int{}
	sampling, stopSampling := context.WithCancel(ctx)
	sampled := make(chan error, 1)
	go func() {
		defer close(sampled)
		for sampling.Err() == nil {
			r, err := rm.reader.Live(sampling)
			if err == nil {
				err = wantA.Verify(sampling, r)
			}
			if sampling.Err() != nil {
				return
			}
			if err != nil {
				sampled <- fmt.Errorf("sample %d of the live version: %w", samples.Load()+1, err)
				return
			}
			samples.Add(1)
			seenMu.Lock()
			if seen[r.ReadModel()] == 0 {
				versionsSeen.Add(1)
			}
			seen[r.ReadModel()]++
			seenMu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()

	rebuild := exec.CommandContext(ctx, ctl, "rebuild", mabis.ProjectionName, "--yes", "--wait", "--grace", "3s", "--by", "rebuild-test", "--reason", "end-to-end test")
	rebuild.Env = os.Environ()
	var stdout, stderr bytes.Buffer
	rebuild.Stdout, rebuild.Stderr = &stdout, &stderr
	if err := rebuild.Start(); err != nil {
		t.Fatal(err)
	}
	rebuilt := make(chan error, 1)
	go func() { rebuilt <- rebuild.Wait() }()

	// SIGKILL a worker once the new version has committed part of the
	// topic, and start another.
	adm, err := kafkaAdmin(options{brokers: kafka.Seeds})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	newGroup := framework.VersionGroup(group, 1)
	for killed := false; !killed; {
		lag, _, err := groupLag(ctx, adm, newGroup, topic)
		if err == nil && lag < int64(statsA.Events)*3/4 && lag > 0 {
			procsMu.Lock()
			victim := procs[0].cmd.Process
			procsMu.Unlock()
			if err := victim.Kill(); err != nil {
				t.Fatal(err)
			}
			_, _ = victim.Wait()
			t.Logf("SIGKILLed a worker with group %s %d records behind", newGroup, lag)
			startWorker()
			killed = true
		}
		select {
		case err := <-rebuilt:
			t.Fatalf("the rebuild ended before a worker was killed: %v\n%s\n%s", err, stdout.String(), stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := <-rebuilt; err != nil {
		t.Fatalf("projectorctl rebuild: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("projectorctl rebuild --wait:\n%s%s", stdout.String(), stderr.String())
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	// Sample on for a moment after the switch.
	time.Sleep(time.Second)
	stopSampling()
	if err := <-sampled; err != nil {
		t.Fatal(err)
	}
	seenMu.Lock()
	t.Logf("%d samples of the live version during the rebuild, all with month A complete: %v", samples.Load(), seen)
	seenMu.Unlock()
	if samples.Load() < 20 || versionsSeen.Load() != 2 {
		t.Errorf("%d samples of %d versions, want at least 20 samples of both versions", samples.Load(), versionsSeen.Load())
	}
	if !strings.Contains(stdout.String(), "switched: billing@v1 is live") {
		t.Errorf("projectorctl did not report the switch:\n%s", stdout.String())
	}

	// The new live version equals the ground truth of both months.
	if r := waitVerified("month A in version 1", wantA, rm.reader); r.ReadModel() != "billing@v1" {
		t.Errorf("live read model %s after the rebuild, want billing@v1", r.ReadModel())
	}
	waitVerified("month B in version 1", wantB, readerB)
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: redisEnv.Client, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{mabis.ProjectionName, "billing@v1"} {
		if parked, err := store.Parked(ctx, v); err != nil || len(parked) > 0 {
			t.Errorf("parked in %s: %v, %v", v, parked, err)
		}
	}

	// After the grace period version 0's keys and group are gone.
	old := ns + ":{billing}:"
	var left []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		left = left[:0]
		iter := redisEnv.Client.Scan(ctx, 0, redischeckpointGlob(old)+"*", 1000).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			if !strings.HasPrefix(k, old+"v1:") && k != old+"versions" && k != old+"meta" {
				left = append(left, k)
			}
		}
		if len(left) == 0 {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("version 0 keys left after the grace period: %d, e.g. %v", len(left), left[:min(5, len(left))])
	}
	if closed, err := redisEnv.Client.HGet(ctx, old+"meta", "closed").Result(); err != nil || closed == "" {
		t.Errorf("version 0 meta has no closed tombstone: %q, %v", closed, err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		described, err := adm.DescribeGroups(ctx, group)
		if err == nil && (described[group].State == "Dead" || described[group].Err != nil) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("consumer group %s of version 0 still exists: %+v, %v", group, described[group], err)
			break
		}
	}
	vs, err := store.Versions(ctx, mabis.ProjectionName)
	if err != nil || vs.Live != 1 || vs.Building != nil || len(vs.Retiring) != 0 || len(vs.History) != 1 || vs.History[0].Outcome != "switched" {
		t.Errorf("versions after the rebuild = %+v, %v", vs, err)
	}
}

// redischeckpointGlob escapes a key prefix for SCAN MATCH.
func redischeckpointGlob(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`, `\`, `\\`)
	return r.Replace(s)
}
