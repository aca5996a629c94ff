package redischeckpoint

import (
	"context"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/internal/testenv"
)

// intCandidates are strings at the edges of Redis's integer parsing.
var intCandidates = []string{
	"0", "-0", "00", "01", "-01", "1", "-1", "+1", " 1", "1 ", "", "-", "+", "1.0", "1e3", "0x1", "١",
	"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
	"09223372036854775807", "18446744073709551615", "18446744073709551616", "99999999999999999999",
	"-99999999999999999999", "123456789012345678901", "9007199254740993", "-9007199254740993",
	"999999999999999", "1000000000000000", "1\x00", "12x", "x12", "--1",
	"inf", "-inf", "nan", "infinity", "0x1p4", "1e+2", "1E2", " ", "5\n", "\t5", "1_000", "0.0", "-0.0", "5.",
	".5", "0b1", "0o7", "1,5", "-999999999999999", "-1000000000000000", "99999999999999", "100000000000000",
}

// TestIsIntMatchesRedis compares the script's is_int, on Redis and on
// miniredis (whose Lua differs: gopher-lua), with what Redis's HINCRBY
// accepts as an integer.
func TestIsIntMatchesRedis(t *testing.T) {
	env := testenv.Redis(t)
	if !env.Real {
		// Under CI testenv fails instead: a fake is not the reference.
		t.Skip("Redis's own HINCRBY is the reference here; miniredis parses integers more leniently")
	}
	ctx := context.Background()
	key := env.Prefix(t) + ":ints"
	redisSays := make([]bool, len(intCandidates))
	args := make([]any, len(intCandidates))
	for i, s := range intCandidates {
		args[i] = s
		env.Client.HSet(ctx, key, "f", s)
		redisSays[i] = env.Client.HIncrBy(ctx, key, "f", 0).Err() == nil
	}
	m := miniredis.RunT(t)
	mini := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer mini.Close()
	for name, c := range map[string]redis.UniversalClient{"redis": env.Client, "miniredis": mini} {
		t.Run(name, func(t *testing.T) {
			// Both implementations, whichever this Lua would use.
			for _, fn := range []string{"is_int", "is_int_pattern", "is_int_printed"} {
				res, err := c.Eval(ctx, luaPrelude+luaIntegers+`
local out = {}
for i = 1, #ARGV do out[i] = `+fn+`(ARGV[i]) and 1 or 0 end
return out`, nil, args...).Int64Slice()
				if err != nil {
					t.Fatal(err)
				}
				for i, s := range intCandidates {
					if (res[i] == 1) != redisSays[i] {
						t.Errorf("%s(%q) = %v, Redis's HINCRBY accepts it: %v", fn, s, res[i] == 1, redisSays[i])
					}
				}
			}
		})
	}
}

// TestExactSums compares add and add_sub with math/big, on the real Redis
// and on miniredis (whose Lua differs: gopher-lua).
func TestExactSums(t *testing.T) {
	edges := []int64{0, 1, -1, 2, 999_999_999_999_999, 1_000_000_000_000_000, -999_999_999_999_999, -1_000_000_000_000_000,
		1 << 53, 1<<53 + 1, -(1 << 53) - 1, math.MaxInt64, math.MaxInt64 - 1, math.MinInt64, math.MinInt64 + 1, 4_611_686_018_427_387_904}
	r := rand.New(rand.NewPCG(1, 2))
	pick := func() int64 {
		switch r.IntN(4) {
		case 0:
			return edges[r.IntN(len(edges))]
		case 1:
			return r.Int64N(2_000_000_000_000_000) - 1_000_000_000_000_000
		case 2:
			return int64(r.Uint64())
		}
		return edges[r.IntN(len(edges))] + r.Int64N(21) - 10
	}
	var args []any
	var want []string
	for range 3000 {
		a, b, c := pick(), pick(), pick()
		sum := new(big.Int).Add(big.NewInt(a), big.NewInt(b))
		diff := new(big.Int).Sub(sum, big.NewInt(c))
		args = append(args, strconv.FormatInt(a, 10), strconv.FormatInt(b, 10), strconv.FormatInt(c, 10))
		want = append(want, sum.String(), diff.String())
	}
	src := luaPrelude + luaIntegers + `
local out = {}
for i = 1, #ARGV, 3 do
  out[#out + 1] = add(ARGV[i], ARGV[i + 1])
  out[#out + 1] = add_sub(ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
return out`
	env := testenv.Redis(t)
	m := miniredis.RunT(t)
	mini := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer mini.Close()
	for name, c := range map[string]redis.UniversalClient{"redis": env.Client, "miniredis": mini} {
		t.Run(name, func(t *testing.T) {
			got, err := c.Eval(context.Background(), src, nil, args...).StringSlice()
			if err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i := range want {
				if got[i] != want[i] {
					if bad++; bad <= 10 {
						what := "a+b"
						if i%2 == 1 {
							what = "a+b-c"
						}
						t.Errorf("a, b, c = %v: %s = %s, want %s", args[i/2*3:i/2*3+3], what, got[i], want[i])
					}
				}
			}
		})
	}
}
