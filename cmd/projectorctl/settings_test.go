package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

// projectorctl reads the connection settings from the table it shares
// with the worker runtime: the same boolean syntax (yes/no accepted, an
// unknown word refused with exit code 2 naming the variable, never read as
// false), the worker's flag names with the old ones still accepted, and no
// password in help text.
func TestSettingsAreTheWorkersTable(t *testing.T) {
	t.Setenv("PROJECTOR_REDIS_PASSWORD", "s3cr3t-redis")
	t.Setenv("PROJECTOR_KAFKA_PASSWORD", "s3cr3t-kafka")
	t.Setenv("PROJECTOR_REDIS_URL", "")
	t.Setenv("PROJECTOR_KAFKA_BROKERS", "")

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("--help exited %d: %s", code, errOut.String())
	}
	help := out.String() + errOut.String()
	for _, secret := range []string{"s3cr3t-redis", "s3cr3t-kafka"} {
		if strings.Contains(help, secret) {
			t.Errorf("--help shows a password:\n%s", help)
		}
	}
	for _, flag := range []string{"--redis-url", "--redis-namespace", "--kafka-tls", "--brokers"} {
		if !strings.Contains(help, flag) {
			t.Errorf("--help lacks %s:\n%s", flag, help)
		}
	}

	// A word that is no boolean is a usage error naming the variable.
	t.Setenv("PROJECTOR_KAFKA_TLS", "maybe")
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"status", "billing"}, strings.NewReader(""), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "PROJECTOR_KAFKA_TLS") {
		t.Errorf("PROJECTOR_KAFKA_TLS=maybe: exit %d, stderr %q; want 2 naming the variable", code, errOut.String())
	}
	// yes is true, as for the worker: the command gets past the settings
	// and stops at the missing Redis URL.
	t.Setenv("PROJECTOR_KAFKA_TLS", "yes")
	errOut.Reset()
	if code := run(context.Background(), []string{"status", "billing", "--namespace", "old-flag-name"}, strings.NewReader(""), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "no Redis") {
		t.Errorf("PROJECTOR_KAFKA_TLS=yes: exit %d, stderr %q; want the missing Redis reported", code, errOut.String())
	}
}

func TestVersion(t *testing.T) {
	t.Setenv("PROJECTOR_KAFKA_TLS", "maybe") // invalid settings do not stop it
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"version"}, strings.NewReader(""), &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "projectorctl ") || !strings.Contains(out.String(), "go1.") {
		t.Errorf("version: exit %d, %q, %q", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"version", "-o", "json"}, strings.NewReader(""), &out, &errOut); code != 0 || !strings.Contains(out.String(), `"version":`) || !strings.Contains(out.String(), `"go_version":`) {
		t.Errorf("version -o json: exit %d, %q", code, out.String())
	}
}

// A skip without a reason is a usage error (exit 2), found before any
// server is asked.
func TestParkedSkipNeedsAReason(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"parked", "skip", "billing", "process/acme/1"}, strings.NewReader(""), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--reason") {
		t.Errorf("exit %d, stderr %q; want 2 naming --reason", code, errOut.String())
	}
}

// Every command that does something shows examples in its help, as kubectl
// and rpk do.
func TestEveryCommandHasExamples(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() && c.Name() != "help" && c.Name() != "completion" && c != c.Root() && strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s has no Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand(strings.NewReader(""), io.Discard, io.Discard))
}

// Projection names complete from Redis (the projections with stored
// state), and after "parked retry PROJECTION" the parked streams.
func TestCompletion(t *testing.T) {
	red := testenv.Redis(t)
	ns := red.Prefix(t)
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: red.Client, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"billing", "bilanz", "orders"} {
		if err := store.Advance(ctx, name, map[string]uint64{"process/acme/1": 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Park(ctx, "billing", controlplane.ParkedStream{StreamID: "process/acme/7", Sequence: 3, Reason: controlplane.ParkGap, Error: "gap", ParkedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PROJECTOR_REDIS_URL", "redis://"+red.Addr)
	t.Setenv("PROJECTOR_REDIS_NAMESPACE", ns)
	complete := func(args ...string) string {
		var out, errOut bytes.Buffer
		if code := run(ctx, append([]string{"__complete"}, args...), strings.NewReader(""), &out, &errOut); code != 0 {
			t.Fatalf("__complete %v: exit %d: %s", args, code, errOut.String())
		}
		return out.String()
	}
	if got := complete("status", "bil"); !strings.Contains(got, "billing\n") || !strings.Contains(got, "bilanz\n") || strings.Contains(got, "orders") {
		t.Errorf("status bil<TAB>:\n%s", got)
	}
	if got := complete("parked", "retry", "billing", ""); !strings.Contains(got, "process/acme/7\tgap at sequence 3") {
		t.Errorf("parked retry billing <TAB>:\n%s", got)
	}
}
