package redischeckpoint_test

import (
	"context"
	"strings"
	"testing"

	"github.com/projector-dev/projector/internal/testenv"
	rc "github.com/projector-dev/projector/redischeckpoint"
)

// aclCommands are the commands an AtomicProjection's ACL user needs for
// the writes of these tests (see the package documentation).
var aclCommands = []string{"eval", "evalsha", "hget", "hmget", "hscan", "type", "get",
	"hset", "hdel", "hincrby", "incrby", "set", "del", "sadd", "srem", "unlink", "scan"}

// aclCase is a failCase run as an ACL user that may not run deny: on no
// key at all when everywhere, else only on the store's own keys, the
// harness's keys rm:e* and the keys of allow.
type aclCase struct {
	failCase
	deny       string
	everywhere bool
	allow      [][]string
}

func aclCases() []aclCase {
	nope := func(op string, k []string) wantWriteError { return refused(op, k, "", "NOPERM") }
	grant := func(t *testing.T, h *applyHarness) {} // set by the test: ACL SETUSER +deny
	return []aclCase{
		{deny: "hset", failCase: failCase{name: "HSET", write: func(w *rc.Writes, h *applyHarness) { w.HSet(w.Key("x"), "f", "v") },
			want: nope("HSET", key("x")), fix: grant, check: wantField(key("x"), "f", "v")}},
		{deny: "hdel", everywhere: true, failCase: failCase{name: "HDEL", setup: cmd("HSET", key("x"), "f", "1", "g", "2"),
			write: func(w *rc.Writes, h *applyHarness) { w.HDel(w.Key("x"), "f") },
			want:  nope("HDEL", key("x")), fix: grant, check: wantDescribed(key("x"), "hash g=2")}},
		{deny: "hincrby", failCase: failCase{name: "HINCRBY", write: func(w *rc.Writes, h *applyHarness) { w.HIncrBy(w.Key("x"), "f", 2) },
			want: nope("HINCRBY", key("x")), fix: grant, check: wantField(key("x"), "f", "2")}},
		{deny: "set", everywhere: true, failCase: failCase{name: "SET", write: func(w *rc.Writes, h *applyHarness) { w.Set(w.Key("x"), "v") },
			want: nope("SET", key("x")), fix: grant, check: wantString(key("x"), "v")}},
		{deny: "incrby", everywhere: true, failCase: failCase{name: "INCRBY", write: func(w *rc.Writes, h *applyHarness) { w.IncrBy(w.Key("x"), 3) },
			want: nope("INCRBY", key("x")), fix: grant, check: wantString(key("x"), "3")}},
		{deny: "get", everywhere: true, failCase: failCase{name: "INCRBY's read of the value", setup: cmd("SET", key("x"), "1"),
			write: func(w *rc.Writes, h *applyHarness) { w.IncrBy(w.Key("x"), 3) },
			want:  nope("INCRBY", key("x")), fix: grant, check: wantString(key("x"), "4")}},
		{deny: "del", everywhere: true, failCase: failCase{name: "DEL", setup: cmd("HSET", key("x"), "f", "1"),
			write: func(w *rc.Writes, h *applyHarness) { w.Del(w.Key("x")) },
			want:  nope("DEL", key("x")), fix: grant, check: wantDescribed(key("x"), "none ")}},
		{deny: "sadd", everywhere: true, failCase: failCase{name: "SADD", write: func(w *rc.Writes, h *applyHarness) { w.SAdd(w.Key("x"), "m") },
			want: nope("SADD", key("x")), fix: grant, check: wantDescribed(key("x"), "set m")}},
		{deny: "srem", everywhere: true, failCase: failCase{name: "SREM", setup: cmd("SADD", key("x"), "m", "n"),
			write: func(w *rc.Writes, h *applyHarness) { w.SRem(w.Key("x"), "m") },
			want:  nope("SREM", key("x")), fix: grant, check: wantDescribed(key("x"), "set n")}},
		{deny: "hset", allow: [][]string{key("x"), key("cnt")}, failCase: failCase{name: "REPLACE into its sum", write: replaceX(5),
			want: nope("REPLACE", key("sum")), fix: grant,
			check: all(wantField(key("x"), "q", "5"), wantField(key("sum"), "q", "5"), wantField(key("cnt"), "q", "1"))}},
		{deny: "hset", allow: [][]string{key("x"), key("sum")}, failCase: failCase{name: "REPLACE_FIELDS into its count", write: replaceFieldsX(1, 2),
			want: nope("REPLACE_FIELDS", key("cnt")), fix: grant,
			check: all(wantDescribed(key("sum"), "hash a=1 b=2"), wantDescribed(key("cnt"), "hash a=1 b=1"))}},
	}
}

// TestApplyRefusesWritesTheACLUserMayNotRun runs each case as its own ACL
// user limited to the test's projection, missing one command; the fix
// grants it.
func TestApplyRefusesWritesTheACLUserMayNotRun(t *testing.T) {
	for _, tc := range aclCases() {
		t.Run(tc.name, func(t *testing.T) {
			env := testenv.Redis(t)
			requireRealRedis(t, env, "ACL users")
			ns := env.Prefix(t)
			base := ns + ":{p}:"
			user, pass := "u-"+ns, "pw-"+ns
			rules := []any{"ACL", "SETUSER", user, "reset", "on", ">" + pass, "~" + base + "*", "resetchannels", "-@all", "+@connection"}
			for _, c := range aclCommands {
				if c != tc.deny {
					rules = append(rules, "+"+c)
				}
			}
			if !tc.everywhere {
				sel := "(+" + tc.deny
				for _, k := range []string{"meta", "fences", "cursors", "event-ids", "serials", "rm:e*"} {
					sel += " ~" + base + k
				}
				for _, k := range tc.allow {
					sel += " ~" + base + "rm:" + strings.Join(k, ":")
				}
				rules = append(rules, sel+")")
			}
			if err := env.Client.Do(t.Context(), rules...).Err(); err != nil {
				t.Fatalf("ACL SETUSER: %v", err)
			}
			t.Cleanup(func() { _ = env.Client.Do(context.Background(), "ACL", "DELUSER", user).Err() })
			client, err := rc.NewClient(rc.ClientConfig{URL: "redis://" + env.Addr, Username: user, Password: pass})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = client.Close() })
			h := newApplyHarness(t, harnessOptions{admin: env.Client, store: client, ns: ns, fenced: true})
			tc.fix = func(t *testing.T, h *applyHarness) { h.do(t, "ACL", "SETUSER", user, "+"+tc.deny) }
			runFailCase(t, h, tc.failCase)
		})
	}
}
