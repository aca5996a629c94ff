package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/examples/billing/api"
	"github.com/projector-dev/projector/examples/billing/loadgen"
	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/framework/memstore"
	"github.com/projector-dev/projector/internal/testenv"
	"github.com/projector-dev/projector/redischeckpoint"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/answers.golden.json from the current read model")

// goldenMonths are the months of the golden answers: March and October
// 2026 hold the clock changes (92 and 100 quarter hours on their last
// Sunday); the generator adds corrections, retroactive assignment changes
// (MovedFrom) and substitute values.
var goldenMonths = []string{"2026-03", "2026-10", "2026-11"}

// TestAnswersMatchTheGoldenFile projects generated months and compares
// every answer of the API (the balance groups' totals of each month and
// every group's series at every resolution) byte for byte with
// testdata/answers.golden.json (large answers by their SHA-256). The golden file was captured from the
// first read-model layout (hashes of quarter-hour fields) before the
// packed layout replaced it: a layout change must not change an answer.
//
// It runs on real Redis (the packed writes use BITFIELD) and on miniredis,
// which has no BITFIELD (the script writes the same bytes from Lua).
func TestAnswersMatchTheGoldenFile(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		env := testenv.Redis(t)
		testGoldenAnswers(t, env.Client, env.Prefix(t))
	})
	t.Run("miniredis", func(t *testing.T) {
		if *updateGolden {
			t.Skip("the golden file is written from real Redis")
		}
		// miniredis has no BITFIELD: the script writes the same bytes
		// from Lua, whose interpreter in miniredis is far too slow for
		// the golden months under -race. A smaller month (the spring
		// clock change's, 12 MaLos) answers the same on both.
		env := testenv.Redis(t)
		mr := miniredis.RunT(t)
		client := redis.NewClient(&redis.Options{Addr: mr.Addr(), ReadTimeout: 2 * time.Minute})
		defer client.Close()
		want := projectAndAnswer(t, env.Client, env.Prefix(t), goldenMonths[:1], 12)
		got := projectAndAnswer(t, client, "golden", goldenMonths[:1], 12)
		compareAnswers(t, got, want)
	})
}

func testGoldenAnswers(t *testing.T, client redis.UniversalClient, namespace string) {
	got := projectAndAnswer(t, client, namespace, goldenMonths, 80)
	path := filepath.Join("testdata", "answers.golden.json")
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	compareAnswers(t, got, want)
}

// projectAndAnswer projects months generated with malos MaLos each (the
// golden file's seeds) into the Redis of client and returns every answer
// of the API about them (see goldenAnswers).
func projectAndAnswer(t *testing.T, client redis.UniversalClient, namespace string, months []string, malos int) []byte {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	const tenant = "netz-golden"
	events := memstore.NewEventStore()
	for i, month := range goldenMonths {
		if !slices.Contains(months, month) {
			continue
		}
		m, _ := mabis.ParseMonth(month)
		cfg := loadgen.Config{Tenant: tenant, Month: m, MaLos: malos, Seed: uint64(20 + i)}
		if _, _, err := loadgen.Generate(ctx, events, cfg); err != nil {
			t.Fatal(err)
		}
	}
	store, err := redischeckpoint.New(redischeckpoint.Config{Client: client, Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	p, err := mabis.NewProjection(store, mabis.ProjectionName)
	if err != nil {
		t.Fatal(err)
	}
	runner, _ := framework.NewProjectionRunner(framework.RunnerConfig{Concurrency: 4})
	prefix, _ := framework.TenantPrefix(tenant)
	if _, err := runner.RunPrefix(ctx, p, events, prefix); err != nil {
		t.Fatal(err)
	}
	reader, err := mabis.NewReader(p, tenant)
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Config{Reader: reader})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	return goldenAnswers(t, srv.URL, months)
}

// compareAnswers fails t for every answer of want that got lacks or
// answers otherwise.
func compareAnswers(t *testing.T, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		var g, w map[string]json.RawMessage
		_ = json.Unmarshal(got, &g)
		_ = json.Unmarshal(want, &w)
		for k, wv := range w {
			if !bytes.Equal(g[k], wv) {
				t.Errorf("%s differs:\n got %.400s\nwant %.400s", k, g[k], wv)
			}
		}
		if len(g) != len(w) {
			t.Errorf("%d answers, want %d", len(g), len(w))
		}
	}
}

// goldenAnswers fetches every answer about months, keyed by its path, as
// one indented JSON object.
func goldenAnswers(t *testing.T, base string, months []string) []byte {
	t.Helper()
	answers := map[string]json.RawMessage{}
	get := func(path string) []byte {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		body = bytes.TrimSpace(body)
		answers[path] = json.RawMessage(body)
		if len(body) > 4096 {
			// A quarter-hour series is about 400 KB: the file keeps its
			// digest, and the small answers as they are.
			answers[path] = json.RawMessage(fmt.Sprintf("%q", fmt.Sprintf("sha256:%x (%d bytes)", sha256.Sum256(body), len(body))))
		}
		return body
	}
	for _, month := range months {
		var totals mabis.MonthTotals
		if err := json.Unmarshal(get("/api/v1/months/"+month+"/balance-groups"), &totals); err != nil {
			t.Fatal(err)
		}
		if len(totals.BalanceGroups) == 0 {
			t.Fatalf("%s: no balance groups", month)
		}
		for _, g := range totals.BalanceGroups {
			for _, res := range []mabis.Resolution{mabis.QuarterHourly, mabis.Hourly, mabis.Daily} {
				get(fmt.Sprintf("/api/v1/months/%s/balance-groups/%s/series?resolution=%s", month, g.EIC, res))
			}
		}
	}
	out, err := json.MarshalIndent(answers, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}
