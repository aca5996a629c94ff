package redischeckpoint_test

import (
	"fmt"
	"strconv"
	"testing"

	rc "github.com/projector-dev/projector/redischeckpoint"
)

func refused(op string, k []string, field, code string) wantWriteError {
	return wantWriteError{kind: rc.ErrWriteRefused, op: op, key: k, field: field, code: code}
}

func invalid(op string, k []string, field, code string) wantWriteError {
	return wantWriteError{kind: rc.ErrInvalidWrite, op: op, key: k, field: field, code: code}
}

// replaceX is the Replace under test: value field q of x, summed into
// sum/q and counted in cnt/q.
func replaceX(value int64) func(w *rc.Writes, h *applyHarness) {
	return func(w *rc.Writes, h *applyHarness) {
		w.Replace(w.Key("x"), "q", value, []rc.HashField{{Key: w.Key("sum"), Field: "q"}}, []rc.HashField{{Key: w.Key("cnt"), Field: "q"}})
	}
}

// replaceFieldsX is the ReplaceFields under test: fields a and b of x,
// summed into sum and counted in cnt.
func replaceFieldsX(a, b int64) func(w *rc.Writes, h *applyHarness) {
	return func(w *rc.Writes, h *applyHarness) {
		w.ReplaceFields(w.Key("x"), []string{"a", "b"}, []int64{a, b}, []string{w.Key("sum")}, []string{w.Key("cnt")})
	}
}

// wrongTypeCases: every write whose key may hold another type.
func wrongTypeCases() []failCase {
	set := cmd("SADD", key("x"), "m")
	str := cmd("SET", key("x"), "5")
	hash := cmd("HSET", key("x"), "f", "1")
	list := cmd("RPUSH", key("x"), "a")
	return []failCase{
		{name: "HSET on a set", setup: set, write: func(w *rc.Writes, h *applyHarness) { w.HSet(w.Key("x"), "f", "v") },
			want: refused("HSET", key("x"), "", "WRONGTYPE"), fix: delKey("x"), check: wantField(key("x"), "f", "v")},
		{name: "HSET on a string", setup: str, write: func(w *rc.Writes, h *applyHarness) { w.HSet(w.Key("x"), "f", "v") },
			want: refused("HSET", key("x"), "", "WRONGTYPE"), fix: delKey("x"), check: wantField(key("x"), "f", "v")},
		{name: "HDEL on a list", setup: list, write: func(w *rc.Writes, h *applyHarness) { w.HDel(w.Key("x"), "f", "g") },
			want: refused("HDEL", key("x"), "", "WRONGTYPE"), fix: delKey("x"), check: wantDescribed(key("x"), "none ")},
		{name: "HINCRBY on a string", setup: str, write: func(w *rc.Writes, h *applyHarness) { w.HIncrBy(w.Key("x"), "f", 7) },
			want: refused("HINCRBY", key("x"), "", "WRONGTYPE"), fix: delKey("x"), check: wantField(key("x"), "f", "7")},
		{name: "INCRBY on a hash", setup: hash, write: func(w *rc.Writes, h *applyHarness) { w.IncrBy(w.Key("x"), 3) },
			want: refused("INCRBY", key("x"), "", "WRONGTYPE"), fix: delKey("x"), check: wantString(key("x"), "3")},
		{name: "INCRBY on a set", setup: set, write: func(w *rc.Writes, h *applyHarness) { w.IncrBy(w.Key("x"), 3) },
			want: refused("INCRBY", key("x"), "", "WRONGTYPE"), fix: delKey("x"), check: wantString(key("x"), "3")},
		{name: "SADD on a hash", setup: hash, write: func(w *rc.Writes, h *applyHarness) { w.SAdd(w.Key("x"), "m", "n") },
			want: refused("SADD", key("x"), "", "WRONGTYPE"), fix: delKey("x"), check: wantDescribed(key("x"), "set m n")},
		{name: "SADD on a string", setup: str, write: func(w *rc.Writes, h *applyHarness) { w.SAdd(w.Key("x"), "m") },
			want: refused("SADD", key("x"), "", "WRONGTYPE"), fix: delKey("x"), check: wantDescribed(key("x"), "set m")},
		{name: "SREM on a hash", setup: hash, write: func(w *rc.Writes, h *applyHarness) { w.SRem(w.Key("x"), "m") },
			want: refused("SREM", key("x"), "", "WRONGTYPE"), fix: delKey("x"), check: wantDescribed(key("x"), "none ")},
		{name: "REPLACE on a set", setup: set, write: replaceX(5),
			want: refused("REPLACE", key("x"), "", "WRONGTYPE"), fix: delKey("x"),
			check: all(wantField(key("x"), "q", "5"), wantField(key("sum"), "q", "5"), wantField(key("cnt"), "q", "1"))},
		{name: "REPLACE with its sum a string", setup: cmd("SET", key("sum"), "1"), write: replaceX(5),
			want: refused("REPLACE", key("sum"), "", "WRONGTYPE"), fix: delKey("sum"),
			check: all(wantField(key("x"), "q", "5"), wantField(key("sum"), "q", "5"), wantField(key("cnt"), "q", "1"))},
		{name: "REPLACE with its count a set", setup: cmd("SADD", key("cnt"), "m"), write: replaceX(5),
			want: refused("REPLACE", key("cnt"), "", "WRONGTYPE"), fix: delKey("cnt"),
			check: all(wantField(key("x"), "q", "5"), wantField(key("sum"), "q", "5"), wantField(key("cnt"), "q", "1"))},
		{name: "REPLACE_FIELDS on a string", setup: str, write: replaceFieldsX(1, 2),
			want: refused("REPLACE_FIELDS", key("x"), "", "WRONGTYPE"), fix: delKey("x"),
			check: all(wantDescribed(key("x"), "hash a=1 b=2"), wantDescribed(key("sum"), "hash a=1 b=2"), wantDescribed(key("cnt"), "hash a=1 b=1"))},
		{name: "REPLACE_FIELDS with its sum a set", setup: cmd("SADD", key("sum"), "m"), write: replaceFieldsX(1, 2),
			want: refused("REPLACE_FIELDS", key("sum"), "", "WRONGTYPE"), fix: delKey("sum"),
			check: all(wantDescribed(key("sum"), "hash a=1 b=2"), wantDescribed(key("cnt"), "hash a=1 b=1"))},
		{name: "REPLACE_FIELDS with its count a list", setup: cmd("RPUSH", key("cnt"), "m"), write: replaceFieldsX(1, 2),
			want: refused("REPLACE_FIELDS", key("cnt"), "", "WRONGTYPE"), fix: delKey("cnt"),
			check: all(wantDescribed(key("sum"), "hash a=1 b=2"), wantDescribed(key("cnt"), "hash a=1 b=1"))},
	}
}

// notIntegerCases: every write that adds to a stored integer, on a value
// that is not one (Redis's string2ll: no "+", no leading zeros or spaces,
// not "-0", within int64).
func notIntegerCases() []failCase {
	var cases []failCase
	for _, bad := range []string{"12x", "", " 1", "1 ", "+1", "01", "-0", "1.5", "1e3", "0x10", "9223372036854775808", "-9223372036854775809", "99999999999999999999"} {
		cases = append(cases, failCase{name: fmt.Sprintf("HINCRBY on %q", bad),
			setup: cmd("HSET", key("x"), "f", bad), write: func(w *rc.Writes, h *applyHarness) { w.HIncrBy(w.Key("x"), "f", 7) },
			want: refused("HINCRBY", key("x"), "f", "NOTINT"), fix: cmd("HSET", key("x"), "f", "12"), check: wantField(key("x"), "f", "19")})
	}
	return append(cases,
		failCase{name: `INCRBY on "abc"`, setup: cmd("SET", key("x"), "abc"), write: func(w *rc.Writes, h *applyHarness) { w.IncrBy(w.Key("x"), 3) },
			want: refused("INCRBY", key("x"), "", "NOTINT"), fix: cmd("SET", key("x"), "1"), check: wantString(key("x"), "4")},
		failCase{name: `INCRBY on "-0"`, setup: cmd("SET", key("x"), "-0"), write: func(w *rc.Writes, h *applyHarness) { w.IncrBy(w.Key("x"), 3) },
			want: refused("INCRBY", key("x"), "", "NOTINT"), fix: cmd("SET", key("x"), "0"), check: wantString(key("x"), "3")},
		// Replace treated a stored value that is not an integer as 0.
		failCase{name: "REPLACE of a value that is not an integer", setup: cmd("HSET", key("x"), "q", "x"), write: replaceX(5),
			want: refused("REPLACE", key("x"), "q", "NOTINT"), fix: cmd("HSET", key("x"), "q", "2"),
			check: all(wantField(key("x"), "q", "5"), wantField(key("sum"), "q", "3"), wantDescribed(key("cnt"), "none "))},
		failCase{name: "REPLACE into a sum that is not an integer", setup: cmd("HSET", key("sum"), "q", "1.5"), write: replaceX(5),
			want: refused("REPLACE", key("sum"), "q", "NOTINT"), fix: cmd("HSET", key("sum"), "q", "10"),
			check: all(wantField(key("sum"), "q", "15"), wantField(key("cnt"), "q", "1"))},
		failCase{name: "REPLACE into a count that is not an integer", setup: cmd("HSET", key("cnt"), "q", "one"), write: replaceX(5),
			want: refused("REPLACE", key("cnt"), "q", "NOTINT"), fix: cmd("HSET", key("cnt"), "q", "1"),
			check: all(wantField(key("sum"), "q", "5"), wantField(key("cnt"), "q", "2"))},
		failCase{name: "REPLACE_FIELDS of a value that is not an integer", setup: cmd("HSET", key("x"), "b", "--"), write: replaceFieldsX(1, 2),
			want: refused("REPLACE_FIELDS", key("x"), "b", "NOTINT"), fix: cmd("HSET", key("x"), "b", "5"),
			check: all(wantDescribed(key("x"), "hash a=1 b=2"), wantDescribed(key("sum"), "hash a=1 b=-3"), wantDescribed(key("cnt"), "hash a=1"))},
		failCase{name: "REPLACE_FIELDS into a sum that is not an integer", setup: cmd("HSET", key("sum"), "a", "x1"), write: replaceFieldsX(1, 2),
			want: refused("REPLACE_FIELDS", key("sum"), "a", "NOTINT"), fix: cmd("HSET", key("sum"), "a", "10"),
			check: all(wantDescribed(key("sum"), "hash a=11 b=2"), wantDescribed(key("cnt"), "hash a=1 b=1"))},
		failCase{name: "REPLACE_FIELDS into a count that is not an integer", setup: cmd("HSET", key("cnt"), "b", "007"), write: replaceFieldsX(1, 2),
			want: refused("REPLACE_FIELDS", key("cnt"), "b", "NOTINT"), fix: cmd("HSET", key("cnt"), "b", "7"),
			check: all(wantDescribed(key("sum"), "hash a=1 b=2"), wantDescribed(key("cnt"), "hash a=1 b=8"))},
	)
}

// overflowCases: every write that adds, past int64 up and down.
func overflowCases() []failCase {
	return []failCase{
		{name: "HINCRBY up", setup: cmd("HSET", key("x"), "f", "9223372036854775800"), write: func(w *rc.Writes, h *applyHarness) { w.HIncrBy(w.Key("x"), "f", 8) },
			want: refused("HINCRBY", key("x"), "f", "OVERFLOW"), fix: cmd("HSET", key("x"), "f", "9223372036854775799"), check: wantField(key("x"), "f", maxInt64)},
		{name: "HINCRBY down", setup: cmd("HSET", key("x"), "f", "-9223372036854775800"), write: func(w *rc.Writes, h *applyHarness) { w.HIncrBy(w.Key("x"), "f", -9) },
			want: refused("HINCRBY", key("x"), "f", "OVERFLOW"), fix: cmd("HSET", key("x"), "f", "-9223372036854775799"), check: wantField(key("x"), "f", minInt64)},
		{name: "INCRBY up", setup: cmd("SET", key("x"), maxInt64), write: func(w *rc.Writes, h *applyHarness) { w.IncrBy(w.Key("x"), 1) },
			want: refused("INCRBY", key("x"), "", "OVERFLOW"), fix: cmd("SET", key("x"), "0"), check: wantString(key("x"), "1")},
		{name: "INCRBY down", setup: cmd("SET", key("x"), "-2"), write: func(w *rc.Writes, h *applyHarness) { w.IncrBy(w.Key("x"), -9223372036854775807) },
			want: refused("INCRBY", key("x"), "", "OVERFLOW"), fix: cmd("SET", key("x"), "-1"), check: wantString(key("x"), minInt64)},
		{name: "REPLACE sum up", setup: cmd("HSET", key("sum"), "q", "9223372036854775803"), write: replaceX(5),
			want: refused("REPLACE", key("sum"), "q", "OVERFLOW"), fix: cmd("HSET", key("sum"), "q", "9223372036854775802"),
			check: wantField(key("sum"), "q", maxInt64)},
		{name: "REPLACE sum down", setup: cmd("HSET", key("sum"), "q", "-9223372036854775804"), write: replaceX(-5),
			want: refused("REPLACE", key("sum"), "q", "OVERFLOW"), fix: cmd("HSET", key("sum"), "q", "-9223372036854775803"),
			check: wantField(key("sum"), "q", minInt64)},
		{name: "REPLACE count up", setup: cmd("HSET", key("cnt"), "q", maxInt64), write: replaceX(5),
			want: refused("REPLACE", key("cnt"), "q", "OVERFLOW"), fix: cmd("HSET", key("cnt"), "q", "0"),
			check: wantField(key("cnt"), "q", "1")},
		{name: "REPLACE_FIELDS sum up", setup: cmd("HSET", key("sum"), "b", "9223372036854775806"), write: replaceFieldsX(1, 2),
			want: refused("REPLACE_FIELDS", key("sum"), "b", "OVERFLOW"), fix: cmd("HSET", key("sum"), "b", "9223372036854775805"),
			check: wantDescribed(key("sum"), "hash a=1 b="+maxInt64)},
		{name: "REPLACE_FIELDS sum down", setup: cmd("HSET", key("sum"), "a", minInt64), write: replaceFieldsX(-1, 2),
			want: refused("REPLACE_FIELDS", key("sum"), "a", "OVERFLOW"), fix: cmd("HSET", key("sum"), "a", "-9223372036854775807"),
			check: wantDescribed(key("sum"), "hash a="+minInt64+" b=2")},
		// The difference to the replaced value leaves int64 although both
		// values are in it.
		{name: "REPLACE_FIELDS difference down", setup: cmd("HSET", key("x"), "a", maxInt64), write: replaceFieldsX(-2, 2),
			want: refused("REPLACE_FIELDS", key("sum"), "a", "OVERFLOW"), fix: cmd("HSET", key("sum"), "a", maxInt64),
			check: wantDescribed(key("sum"), "hash a=-2 b=2")},
		{name: "REPLACE_FIELDS count up", setup: cmd("HSET", key("cnt"), "a", maxInt64), write: replaceFieldsX(1, 2),
			want: refused("REPLACE_FIELDS", key("cnt"), "a", "OVERFLOW"), fix: cmd("HSET", key("cnt"), "a", "1"),
			check: wantDescribed(key("cnt"), "hash a=2 b=1")},
	}
}

// sameEventCases: an earlier write of the same event makes a later one
// fail, or a key is used as two types.
func sameEventCases() []failCase {
	return []failCase{
		{name: "HINCRBY twice, only the sum overflows", setup: cmd("HSET", key("x"), "f", "9223372036854775800"),
			write: func(w *rc.Writes, h *applyHarness) { w.HIncrBy(w.Key("x"), "f", 5); w.HIncrBy(w.Key("x"), "f", 5) },
			want:  refused("HINCRBY", key("x"), "f", "OVERFLOW"), fix: cmd("HSET", key("x"), "f", "0"), check: wantField(key("x"), "f", "10")},
		{name: "HSET of a non-integer then HINCRBY", write: func(w *rc.Writes, h *applyHarness) { w.HSet(w.Key("x"), "f", "abc"); w.HIncrBy(w.Key("x"), "f", 1) },
			want: refused("HINCRBY", key("x"), "f", "NOTINT"), fix: func(t *testing.T, h *applyHarness) {
				h.write = func(w *rc.Writes, h *applyHarness) { w.HSet(w.Key("x"), "f", "41"); w.HIncrBy(w.Key("x"), "f", 1) }
			}, check: wantField(key("x"), "f", "42")},
		{name: "SET of a non-integer then INCRBY", write: func(w *rc.Writes, h *applyHarness) { w.Set(w.Key("x"), "abc"); w.IncrBy(w.Key("x"), 1) },
			want: refused("INCRBY", key("x"), "", "NOTINT"), fix: func(t *testing.T, h *applyHarness) {
				h.write = func(w *rc.Writes, h *applyHarness) { w.Set(w.Key("x"), "41"); w.IncrBy(w.Key("x"), 1) }
			}, check: wantString(key("x"), "42")},
		{name: "SADD after a DEL of another key on a hash", setup: cmd("HSET", key("x"), "f", "1"),
			write: func(w *rc.Writes, h *applyHarness) { w.Del(w.Key("y")); w.SAdd(w.Key("x"), "m") },
			want:  refused("SADD", key("x"), "", "WRONGTYPE"), fix: delKey("x"), check: wantDescribed(key("x"), "set m")},
		// Refused before sending: a key used as a hash and then as a set
		// without a DEL or SET in between.
		{name: "one key as a hash and a set", write: func(w *rc.Writes, h *applyHarness) { w.HSet(w.Key("x"), "f", "1"); w.SAdd(w.Key("x"), "m") },
			want: invalid("SADD", key("x"), "", "INVALID"), fix: func(t *testing.T, h *applyHarness) {
				h.write = func(w *rc.Writes, h *applyHarness) {
					w.HSet(w.Key("x"), "f", "1")
					w.Del(w.Key("x"))
					w.SAdd(w.Key("x"), "m")
				}
			}, check: wantDescribed(key("x"), "set m")},
		{name: "one key as a sum and a string", write: func(w *rc.Writes, h *applyHarness) {
			w.IncrBy(w.Key("sum"), 1)
			replaceX(5)(w, h)
		}, want: invalid("REPLACE", key("sum"), "", "INVALID"), fix: func(t *testing.T, h *applyHarness) { h.write = replaceX(5) },
			check: wantField(key("sum"), "q", "5")},
		{name: "REPLACE_FIELDS of one field twice", write: func(w *rc.Writes, h *applyHarness) {
			w.ReplaceFields(w.Key("x"), []string{"a", "a"}, []int64{1, 2}, []string{w.Key("sum")}, nil)
		}, want: invalid("REPLACE_FIELDS", key("x"), "a", "INVALID"), fix: func(t *testing.T, h *applyHarness) { h.write = replaceFieldsX(1, 2) },
			check: wantDescribed(key("sum"), "hash a=1 b=2")},
	}
}

// limitCases: writes above the size limits are refused before sending.
func limitCases() []failCase {
	members := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "m" + strconv.Itoa(i)
		}
		return out
	}
	shrink := func(t *testing.T, h *applyHarness) { h.size = 3 }
	return []failCase{
		{name: "SADD above MaxWriteValues", write: func(w *rc.Writes, h *applyHarness) { w.SAdd(w.Key("x"), members(h.size)...) },
			want: invalid("SADD", key("x"), "", "LIMIT"), fix: shrink, check: wantDescribed(key("x"), "set m0 m1 m2")},
		{name: "SREM above MaxWriteValues", write: func(w *rc.Writes, h *applyHarness) { w.SRem(w.Key("x"), members(h.size)...) },
			want: invalid("SREM", key("x"), "", "LIMIT"), fix: shrink, check: wantDescribed(key("x"), "none ")},
		{name: "HDEL above MaxWriteValues", write: func(w *rc.Writes, h *applyHarness) { w.HDel(w.Key("x"), members(h.size)...) },
			want: invalid("HDEL", key("x"), "", "LIMIT"), fix: shrink, check: wantDescribed(key("x"), "none ")},
		{name: "REPLACE_FIELDS above MaxWriteValues", write: func(w *rc.Writes, h *applyHarness) {
			fields := members(h.size)
			w.ReplaceFields(w.Key("x"), fields, make([]int64, len(fields)), []string{w.Key("sum")}, nil)
		}, want: invalid("REPLACE_FIELDS", key("x"), "", "LIMIT"), fix: shrink, check: wantDescribed(key("sum"), "hash m0=0 m1=0 m2=0")},
		{name: "an event above MaxEventValues", write: func(w *rc.Writes, h *applyHarness) {
			for i := 0; i*rc.MaxWriteValues < h.size; i++ {
				w.SAdd(w.Key("x", strconv.Itoa(i)), members(min(rc.MaxWriteValues, h.size-i*rc.MaxWriteValues))...)
			}
		}, // with event 2's first write, the tenth SADD crosses the limit
			want: invalid("SADD", key("x", strconv.Itoa(rc.MaxEventValues/rc.MaxWriteValues-1)), "", "LIMIT"), fix: shrink, check: wantDescribed(key("x", "0"), "set m0 m1 m2")},
	}
}

func TestApplyRefusesAWholeEvent(t *testing.T) {
	groups := []struct {
		name  string
		cases []failCase
		size  int
	}{
		{"wrong type", wrongTypeCases(), 0},
		{"not an integer", notIntegerCases(), 0},
		{"overflow", overflowCases(), 0},
		{"same event", sameEventCases(), 0},
		{"limits", limitCases()[:4], rc.MaxWriteValues + 1},
		{"event limit", limitCases()[4:], rc.MaxEventValues + 1},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.cases {
				t.Run(tc.name, func(t *testing.T) {
					h := realHarness(t)
					h.size = g.size
					runFailCase(t, h, tc)
				})
			}
		})
	}
}

// TestApplyRefusesAWholeEventOnMiniredis runs the cases without ACL on the
// in-process fake the embedded demo uses.
func TestApplyRefusesAWholeEventOnMiniredis(t *testing.T) {
	cases := append(append(wrongTypeCases(), notIntegerCases()[:3]...), overflowCases()...)
	cases = append(cases, sameEventCases()...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runFailCase(t, miniHarness(t), tc)
		})
	}
}
