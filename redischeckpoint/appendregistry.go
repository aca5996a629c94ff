package redischeckpoint

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/appendguard"
	"github.com/projector-dev/projector/framework"
)

// The append registry: [appendguard.Registry] on Redis.
//
// Each stream of a topic is one hash, "<namespace>:appends:<topic>:{<stream
// ID>}", so every call touches one key (one hash slot on a Cluster) and the
// streams spread over the slots. Its fields:
//
//	seq, offset      the head: the last sequence and its record's offset
//	token, writer    the pending reservation, when there is one: its token,
//	first, n,        the producer's transactional ID, its first sequence,
//	through,         how many it covers, its last sequence (first+n-1),
//	first_offset,    the offsets Record stored (-1 before), and when its
//	last_offset,     lease ends, in milliseconds since the Unix epoch by
//	expires          the Redis server's clock (TIME)
//	last             the token of the last reservation resolved as written,
//	                 so that its Commit after a repair succeeds
//
// Every method but Get is one script, atomic on the server. Sequences are
// decimal strings compared and added digit by digit, so they are exact over
// the whole uint64 range; offsets are stored as the caller gives them and
// never computed with. Lease deadlines are server time: writers on hosts
// with skewed clocks agree on when a lease ends.

// AppendRegistry is an [appendguard.Registry] in Redis, for the streams of
// one Kafka topic. Every writer process of the topic builds one on the same
// Redis and namespace; it is safe for concurrent use.
//
// With Config.WaitReplicas set, every call that writes returns only once
// Redis's WAIT reports that many replicas acknowledged it, else a
// [*NotReplicatedError] (the write stays on the master; retrying is safe).
// Run it on a Redis that persists every write before answering
// (appendfsync always): a registry that forgets a reservation or a head
// lets a second writer take a sequence already written. The scripts call
// TIME: an ACL user needs it besides EVAL, EVALSHA, HMGET, HGET, HSET, HDEL
// and EXISTS.
type AppendRegistry struct {
	s     *Store
	topic string
	// name names the registry in errors: "appends:<topic>".
	name string
	// base is "<namespace>:appends:<topic>:"; a stream's key adds
	// "{<stream ID>}".
	base string
}

var _ appendguard.Registry = (*AppendRegistry)(nil)

// NewAppendRegistry returns the registry of topic's streams on cfg's Redis.
// cfg is a [Store]'s configuration (Client, Namespace, WaitReplicas,
// WaitTimeout and Logger count here); a Store and its registries may share
// one Config and client. It returns the joined problems of cfg, or an
// error when topic is not a Kafka topic name.
func NewAppendRegistry(cfg Config, topic string) (*AppendRegistry, error) {
	if err := validateTopic(topic); err != nil {
		return nil, err
	}
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return &AppendRegistry{s: s, topic: topic, name: "appends:" + topic, base: s.cfg.Namespace + ":appends:" + topic + ":"}, nil
}

// validateTopic accepts a Kafka topic name: 1 to 249 characters from
// [a-zA-Z0-9._-]. It also keeps hash tags and patterns out of the keys.
func validateTopic(topic string) error {
	if topic == "" || len(topic) > 249 {
		return fmt.Errorf("redischeckpoint: append registry: topic %q is not 1 to 249 characters", topic)
	}
	for _, c := range []byte(topic) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("redischeckpoint: append registry: topic %q holds %q, not a Kafka topic character", topic, c)
		}
	}
	return nil
}

// Topic returns the topic whose streams the registry serialises.
func (a *AppendRegistry) Topic() string { return a.topic }

// Key returns the Redis key of streamID's hash.
func (a *AppendRegistry) Key(streamID string) string { return a.base + "{" + streamID + "}" }

// appendPrelude holds the helpers of the registry's scripts. KEYS[1] is
// always the stream's hash.
var appendPrelude = `
local function num_less(a, b)
  return #a < #b or (#a == #b and a < b)
end
-- dec_add adds two decimal strings without leading zeros, digit by digit:
-- exact whatever their size (Lua numbers are doubles).
local function dec_add(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry
    if i > 0 then d = d + string.byte(a, i) - 48; i = i - 1 end
    if j > 0 then d = d + string.byte(b, j) - 48; j = j - 1 end
    out[#out + 1] = string.char(48 + d % 10)
    if d >= 10 then carry = 1 else carry = 0 end
  end
  if #out == 0 then return '0' end
  return string.reverse(table.concat(out))
end
-- server_ms is the server's clock in milliseconds (exact in a double).
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local pending_fields = {'token', 'writer', 'first', 'n', 'through', 'first_offset', 'last_offset', 'expires', 'partition'}
-- resolve ends the pending reservation; written moves the head to its last
-- sequence at offset and remembers its token.
local function resolve(written, offset)
  if written then
    local through = redis.call('HGET', KEYS[1], 'through')
    redis.call('HSET', KEYS[1], 'seq', through, 'offset', offset, 'last', redis.call('HGET', KEYS[1], 'token'))
  end
  redis.call('HDEL', KEYS[1], unpack(pending_fields))
end
`

// appendReserveScript reserves: ARGV[1] = the expected head sequence (""
// for any), ARGV[2] = n, ARGV[3] = writer, ARGV[4] = lease in ms, ARGV[5] =
// the new token. It answers
//
//	{'OK', head seq, head offset, first, expires}
//	{'UNKNOWN'}
//	{'CONFLICT', head seq}
//	{'BUSY', writer, ms left}
//	{'EXPIRED', token, writer, first, n, first_offset, last_offset, expires, head seq, head offset, partition}
//	{'OVERFLOW', head seq}     the last sequence would pass 2^64-1
//
// (tables rather than error replies, which the client would take for a
// server state such as BUSY).
var appendReserveScript = redis.NewScript(appendPrelude + `
local h = redis.call('HMGET', KEYS[1], 'seq', 'offset', 'token', 'writer', 'first', 'n', 'first_offset', 'last_offset', 'expires', 'partition')
if not h[1] then return {'UNKNOWN'} end
if ARGV[1] ~= '' and h[1] ~= ARGV[1] then return {'CONFLICT', h[1]} end
local now = server_ms()
if h[3] then
  local expires = tonumber(h[9]) or 0
  if now < expires then return {'BUSY', h[4] or '', string.format('%d', expires - now)} end
  return {'EXPIRED', h[3], h[4] or '', h[5] or '', h[6] or '', h[7] or '-1', h[8] or '-1', h[9] or '0', h[1], h[2] or '-1', h[10] or '-1'}
end
local through = dec_add(h[1], ARGV[2])
if num_less('18446744073709551615', through) then return {'OVERFLOW', h[1]} end
local first = dec_add(h[1], '1')
local expires = string.format('%d', now + tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'token', ARGV[5], 'writer', ARGV[3], 'first', first, 'n', ARGV[2], 'through', through,
  'first_offset', '-1', 'last_offset', '-1', 'expires', expires, 'partition', '-1')
return {'OK', h[1], h[2] or '-1', first, expires}
`)

// appendSeedScript sets the head, ARGV[1] = sequence and ARGV[2] = offset,
// unless the stream's hash exists, and answers {seq, offset} as stored.
var appendSeedScript = redis.NewScript(appendPrelude + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'offset', ARGV[2])
end
return redis.call('HMGET', KEYS[1], 'seq', 'offset')
`)

// appendRecordScript stores ARGV[2], ARGV[3] as the first and last offset
// and ARGV[4] as the partition of the reservation with token ARGV[1] while
// it is pending and its lease runs. It answers 1 when it stored them, 0
// when not.
var appendRecordScript = redis.NewScript(appendPrelude + `
local h = redis.call('HMGET', KEYS[1], 'token', 'expires')
if h[1] ~= ARGV[1] then return 0 end
if not (server_ms() < (tonumber(h[2]) or 0)) then return 0 end
redis.call('HSET', KEYS[1], 'first_offset', ARGV[2], 'last_offset', ARGV[3], 'partition', ARGV[4])
return 1
`)

// appendCommitScript commits the reservation with token ARGV[1] at last
// offset ARGV[2]. It answers 1 when it moved the head, 2 when a repair
// resolved the reservation as written before, 0 otherwise (resolved as not
// written).
var appendCommitScript = redis.NewScript(appendPrelude + `
local h = redis.call('HMGET', KEYS[1], 'token', 'last')
if h[1] == ARGV[1] then
  resolve(true, ARGV[2])
  return 1
end
if h[2] == ARGV[1] then return 2 end
return 0
`)

// appendResolveScript ends the reservation with token ARGV[1] while it is
// pending: written ("1" in ARGV[2]) moves the head to its last sequence at
// offset ARGV[3]. It answers 1 when it ended it, 0 when it was not
// pending.
var appendResolveScript = redis.NewScript(appendPrelude + `
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
resolve(ARGV[2] == '1', ARGV[3])
return 1
`)

// Reserve implements [appendguard.Registry]: one script checks, in this
// order, that the stream is known ([appendguard.ErrUnknownStream]), the
// expected version against the head (a [*framework.VersionConflictError]
// with the head as Actual), that no reservation is live (an
// [*appendguard.BusyError]) or expired unresolved (an
// [*appendguard.ExpiredError] carrying it), and reserves the next n
// sequences until lease from now by the Redis server's clock (rounded up to
// a millisecond). A Redis that cannot serve now gives an
// [*UnavailableError] ([framework.ErrUnavailable]). With
// Config.WaitReplicas set and too few replicas acknowledging the new
// reservation, it returns the reservation together with a
// [*NotReplicatedError]: nothing may be written under it, and the caller
// should release it (Resolve with written false) rather than leave the
// stream reserved until the lease ends.
func (a *AppendRegistry) Reserve(ctx context.Context, streamID string, expected framework.ExpectedVersion, n int, writer string, lease time.Duration) (appendguard.Reservation, error) {
	if err := appendguard.CheckReserve(streamID, n, writer, lease); err != nil {
		return appendguard.Reservation{}, err
	}
	exp := ""
	if v, ok := expected.Exact(); ok {
		exp = strconv.FormatUint(v, 10)
	}
	ms := (lease + time.Millisecond - 1) / time.Millisecond
	token := appendguard.NewToken()
	raw, waitErr, err := a.evalAndWait(ctx, streamID, appendReserveScript,
		[]any{exp, strconv.Itoa(n), writer, strconv.FormatInt(int64(ms), 10), token}, "the reservation of stream "+streamID)
	res, err := stringSlice(raw, err)
	if err != nil {
		return appendguard.Reservation{}, a.fail("reserve", streamID, err)
	}
	bad := func() (appendguard.Reservation, error) {
		return appendguard.Reservation{}, fmt.Errorf("redischeckpoint: append registry %s: reserve stream %s: unexpected reply %q", a.topic, streamID, res)
	}
	if len(res) == 0 {
		return bad()
	}
	switch res[0] {
	case "OK":
		if len(res) != 5 {
			return bad()
		}
		head, err1 := parseAppendHead(res[1], res[2])
		first, err2 := strconv.ParseUint(res[3], 10, 64)
		expires, err3 := strconv.ParseInt(res[4], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return bad()
		}
		r := appendguard.Reservation{StreamID: streamID, Token: token, Writer: writer, Head: head, First: first, N: n,
			Partition: -1, FirstOffset: -1, LastOffset: -1, Expires: time.UnixMilli(expires)}
		return r, waitErr
	case "UNKNOWN":
		return appendguard.Reservation{}, appendguard.ErrUnknownStream
	case "CONFLICT":
		if len(res) != 2 {
			return bad()
		}
		actual, err := strconv.ParseUint(res[1], 10, 64)
		if err != nil {
			return bad()
		}
		return appendguard.Reservation{}, &framework.VersionConflictError{StreamID: streamID, Expected: expected, Actual: actual}
	case "BUSY":
		if len(res) != 3 {
			return bad()
		}
		left, err := strconv.ParseInt(res[2], 10, 64)
		if err != nil {
			return bad()
		}
		return appendguard.Reservation{}, &appendguard.BusyError{StreamID: streamID, Writer: res[1], Left: time.Duration(left) * time.Millisecond}
	case "EXPIRED":
		if len(res) != 11 {
			return bad()
		}
		p, err := parsePending(streamID, append(res[1:8:8], res[10]), res[8], res[9])
		if err != nil {
			return bad()
		}
		return appendguard.Reservation{}, &appendguard.ExpiredError{Reservation: *p}
	case "OVERFLOW":
		return appendguard.Reservation{}, fmt.Errorf("redischeckpoint: append registry %s: stream %s at sequence %s: %d more sequences pass the largest uint64", a.topic, streamID, res[1], n)
	}
	return bad()
}

// Seed implements [appendguard.Registry]: one script stores head unless
// the stream's hash exists, and returns the head stored afterwards. An
// invalid stream ID is refused before anything is sent. With
// Config.WaitReplicas set, the head must reach that many replicas, else
// Seed returns a [*NotReplicatedError] (retrying is safe).
func (a *AppendRegistry) Seed(ctx context.Context, streamID string, head appendguard.Head) (appendguard.Head, error) {
	if err := framework.ValidateStreamID(streamID); err != nil {
		return appendguard.Head{}, err
	}
	raw, waitErr, err := a.evalAndWait(ctx, streamID, appendSeedScript,
		[]any{strconv.FormatUint(head.Sequence, 10), strconv.FormatInt(head.Offset, 10)}, "the head of stream "+streamID)
	res, err := stringSlice(raw, err)
	if err != nil {
		return appendguard.Head{}, a.fail("seed", streamID, err)
	}
	if len(res) != 2 {
		return appendguard.Head{}, fmt.Errorf("redischeckpoint: append registry %s: seed stream %s: unexpected reply %q", a.topic, streamID, res)
	}
	got, err := parseAppendHead(res[0], res[1])
	if err != nil {
		return appendguard.Head{}, fmt.Errorf("redischeckpoint: append registry %s: seed stream %s: %w", a.topic, streamID, err)
	}
	if waitErr != nil {
		return appendguard.Head{}, waitErr
	}
	return got, nil
}

// Record implements [appendguard.Registry]: one script stores the offsets
// while r is the stream's pending reservation and its lease runs by the
// server's clock, else it returns [appendguard.ErrLeaseLost] and stores
// nothing. With Config.WaitReplicas set, the offsets must reach that many
// replicas, else Record returns a [*NotReplicatedError] and the writer must
// not commit its records.
func (a *AppendRegistry) Record(ctx context.Context, r appendguard.Reservation, partition int32, first, last int64) error {
	raw, waitErr, err := a.evalAndWait(ctx, r.StreamID, appendRecordScript,
		[]any{r.Token, strconv.FormatInt(first, 10), strconv.FormatInt(last, 10), strconv.FormatInt(int64(partition), 10)}, "the offsets of the reservation of stream "+r.StreamID)
	if err != nil {
		return a.fail("record", r.StreamID, err)
	}
	if ok, _ := raw.(int64); ok != 1 {
		return appendguard.ErrLeaseLost
	}
	return waitErr
}

// Commit implements [appendguard.Registry]: while r is the stream's pending
// reservation (its lease may have ended) one script moves the head to r's
// last sequence at lastOffset and ends r. It also succeeds when a repair
// resolved r as written, and returns [appendguard.ErrResolvedUnwritten]
// otherwise. With Config.WaitReplicas set, the new head must reach that
// many replicas, else Commit returns a [*NotReplicatedError]; retrying
// Commit is safe.
func (a *AppendRegistry) Commit(ctx context.Context, r appendguard.Reservation, lastOffset int64) error {
	raw, waitErr, err := a.evalAndWait(ctx, r.StreamID, appendCommitScript,
		[]any{r.Token, strconv.FormatInt(lastOffset, 10)}, "the commit of stream "+r.StreamID)
	if err != nil {
		return a.fail("commit", r.StreamID, err)
	}
	if n, _ := raw.(int64); n != 1 && n != 2 {
		return appendguard.ErrResolvedUnwritten
	}
	return waitErr
}

// Resolve implements [appendguard.Registry]: while r is the stream's
// pending reservation one script ends it, moving the head to r's last
// sequence at lastOffset when written; otherwise it does nothing. With
// Config.WaitReplicas set, the outcome must reach that many replicas, else
// Resolve returns a [*NotReplicatedError]; retrying is safe.
func (a *AppendRegistry) Resolve(ctx context.Context, r appendguard.Reservation, written bool, lastOffset int64) error {
	w := "0"
	if written {
		w = "1"
	}
	_, waitErr, err := a.evalAndWait(ctx, r.StreamID, appendResolveScript,
		[]any{r.Token, w, strconv.FormatInt(lastOffset, 10)}, "the resolution of the reservation of stream "+r.StreamID)
	if err != nil {
		return a.fail("resolve", r.StreamID, err)
	}
	return waitErr
}

// Get implements [appendguard.Registry] with one HMGET. It neither writes
// nor waits for replicas. A Redis that cannot serve now gives an
// [*UnavailableError].
func (a *AppendRegistry) Get(ctx context.Context, streamID string) (appendguard.Head, *appendguard.Reservation, bool, error) {
	vals, err := a.s.client.HMGet(ctx, a.Key(streamID), "seq", "offset",
		"token", "writer", "first", "n", "first_offset", "last_offset", "expires", "partition").Result()
	if err != nil {
		return appendguard.Head{}, nil, false, a.fail("get", streamID, err)
	}
	str := make([]string, len(vals))
	for i, v := range vals {
		str[i], _ = v.(string)
	}
	if len(vals) != 10 || vals[0] == nil {
		return appendguard.Head{}, nil, false, nil
	}
	corrupt := func(err error) (appendguard.Head, *appendguard.Reservation, bool, error) {
		return appendguard.Head{}, nil, false, fmt.Errorf("redischeckpoint: append registry %s: key %s: %w", a.topic, a.Key(streamID), err)
	}
	head, err := parseAppendHead(str[0], str[1])
	if err != nil {
		return corrupt(err)
	}
	if vals[2] == nil {
		return head, nil, true, nil
	}
	p, err := parsePending(streamID, str[2:], str[0], str[1])
	if err != nil {
		return corrupt(err)
	}
	return head, p, true, nil
}

// parseAppendHead parses a stored head.
func parseAppendHead(seq, offset string) (appendguard.Head, error) {
	s, err1 := strconv.ParseUint(seq, 10, 64)
	o, err2 := strconv.ParseInt(offset, 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return appendguard.Head{}, fmt.Errorf("corrupt head %q at offset %q: %w", seq, offset, err)
	}
	return appendguard.Head{Sequence: s, Offset: o}, nil
}

// parsePending parses a stored reservation: f holds token, writer, first,
// n, first_offset, last_offset, expires and partition (absent: -1); seq
// and offset are the head.
func parsePending(streamID string, f []string, seq, offset string) (*appendguard.Reservation, error) {
	if len(f) < 7 {
		return nil, fmt.Errorf("corrupt reservation %q", f)
	}
	head, err := parseAppendHead(seq, offset)
	if err != nil {
		return nil, err
	}
	first, err1 := strconv.ParseUint(f[2], 10, 64)
	n, err2 := strconv.Atoi(f[3])
	fo, err3 := strconv.ParseInt(f[4], 10, 64)
	lo, err4 := strconv.ParseInt(f[5], 10, 64)
	exp, err5 := strconv.ParseInt(f[6], 10, 64)
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return nil, fmt.Errorf("corrupt reservation %q: %w", f, err)
	}
	partition := int64(-1)
	if len(f) > 7 && f[7] != "" {
		if partition, err = strconv.ParseInt(f[7], 10, 32); err != nil {
			return nil, fmt.Errorf("corrupt reservation %q: %w", f, err)
		}
	}
	return &appendguard.Reservation{StreamID: streamID, Token: f[0], Writer: f[1], Head: head, First: first, N: n,
		Partition: int32(partition), FirstOffset: fo, LastOffset: lo, Expires: time.UnixMilli(exp)}, nil
}

// fail classifies a failed call as the Store does: a Redis that cannot
// serve now is an [*UnavailableError] (whose Projection is
// "appends:<topic>"), anything else is wrapped with the call.
func (a *AppendRegistry) fail(op, streamID string, err error) error {
	if unavailable(err) {
		return &UnavailableError{Projection: a.name, Err: err}
	}
	return fmt.Errorf("redischeckpoint: append registry %s: %s stream %s: %w", a.topic, op, streamID, err)
}

// evalAndWait is [Store.evalAndWait] for the one key of streamID: the
// script, and with Config.WaitReplicas set WAIT on the same connection in
// the same round trip. err is the script's error; waitErr, only when the
// script succeeded, a [*NotReplicatedError] (naming the registry as
// "appends:<topic>") or the failure of the WAIT itself.
func (a *AppendRegistry) evalAndWait(ctx context.Context, streamID string, script *redis.Script, args []any, what string) (res any, waitErr, err error) {
	key := a.Key(streamID)
	return a.s.evalWaiting(ctx, []string{key}, key, a.name, "append registry "+a.topic, script, args, what)
}
