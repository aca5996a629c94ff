package redischeckpoint

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/projector-dev/projector/controlplane"
)

// Write serials: how a fence holder notices that Redis lost its writes.
//
// Redis loses writes as a suffix: a restart without persistence loses all of
// them, a failover the ones its replica had not received, and a Redis that
// lost a write has lost every later one too (one projection's keys share a
// slot, hence one master, one replication stream, one AOF). A worker that
// keeps running after such a loss still believes in what it wrote; if it
// then stored a cursor over an event whose read-model write was lost and
// committed the offset, the event would be gone for good.
//
// So every fenced script first checks and raises a per-partition write
// serial. The Store that acquired the fence counts the writes it knows
// happened: a serial below that count means writes were lost, and the
// script refuses with STATELOST before writing anything ([ErrStateLost]). A
// write whose outcome is unknown (a timeout, a dropped connection, an error
// reply that may come after the script's first write) cannot be counted;
// if it ran, the serial is above the count, and that surplus would hide a
// later loss of as many counted writes (the fault suite found a restart
// that lost an acknowledged apply this way, and the next checkpoint raised
// the cursor over it). So every write that succeeds answers the serial it
// set, and the count becomes exactly that: the surplus of earlier writes
// whose replies were lost, or that go-redis sent again, is absorbed at the
// next acknowledged write.

type sessionKey struct {
	projection string
	partition  int32
}

// session is the newest fence a Store acquired for a partition and the
// least serial its next write must find.
type session struct {
	epoch, token uint64
	floor        uint64
}

// guard is one script call's guard arguments (see luaPrelude) and what its
// outcome means for the session.
type guard struct {
	s    *Store
	ss   *session // nil when not tracked
	args []any
}

// guardFor returns the guard of a write made with ctx to projection name:
// fenced if ctx carries a fence ([controlplane.WithFence]), tracked if this
// Store acquired that fence.
func (s *Store) guardFor(ctx context.Context, name string) (guard, error) {
	f, ok := controlplane.FenceFrom(ctx)
	if !ok {
		return guard{args: []any{"", "", "", ""}}, nil
	}
	if f.Projection != name {
		return guard{}, fmt.Errorf("redischeckpoint: a write to projection %s carries a fence of projection %s", name, f.Projection)
	}
	g := guard{s: s}
	serial := ""
	s.sessionsMu.Lock()
	if ss := s.sessions[sessionKey{name, f.Partition}]; ss != nil && ss.epoch == f.Epoch && ss.token == f.Token {
		g.ss = ss
		serial = strconv.FormatUint(ss.floor, 10)
	}
	s.sessionsMu.Unlock()
	g.args = []any{strconv.FormatInt(int64(f.Partition), 10), strconv.FormatUint(f.Epoch, 10), strconv.FormatUint(f.Token, 10), serial}
	return g, nil
}

// done records the outcome of the guarded call — reply and err as go-redis
// returned them — and returns the script's own reply (see guardedScript).
func (g guard) done(reply any, err error) any {
	res, serial, marked := unwrapSerial(reply)
	if g.ss == nil {
		return res
	}
	g.s.sessionsMu.Lock()
	defer g.s.sessionsMu.Unlock()
	switch {
	case err == nil && marked:
		// The exact serial the write set: it counts this write and every
		// earlier one that ran though its reply was lost (a timeout, a
		// reset, go-redis sending it again).
		g.ss.floor = max(g.ss.floor, serial)
	case err == nil || hasReplyPrefix(err, "BADCURSOR "):
		// The guard passed and raised the serial. Anything else was
		// refused by the guard (nothing written) or may or may not have
		// run: it does not count.
		g.ss.floor++
	}
	return res
}

// unwrapSerial splits the reply of a guarded script into the script's own
// reply and the serial its guard set; marked is false for a reply without
// one (an untracked writer, a script that does not write).
func unwrapSerial(reply any) (res any, serial uint64, marked bool) {
	list, ok := reply.([]any)
	if !ok || len(list) < 2 || list[0] != serialMark {
		return reply, 0, false
	}
	n, err := strconv.ParseUint(fmt.Sprint(list[1]), 10, 64)
	if err != nil {
		return reply, 0, false
	}
	if len(list) > 2 {
		res = list[2]
	}
	return res, n, true
}

// hasReplyPrefix reports whether err is a Redis error reply starting with
// prefix.
func hasReplyPrefix(err error, prefix string) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(err.Error(), prefix)
}

// startSession records a fence the Store just acquired, with the serial
// Redis held for its partition at that moment.
func (s *Store) startSession(f controlplane.Fence, serial uint64) {
	s.sessionsMu.Lock()
	defer s.sessionsMu.Unlock()
	s.sessions[sessionKey{f.Projection, f.Partition}] = &session{epoch: f.Epoch, token: f.Token, floor: serial}
}

// run calls a script with the guard arguments of ctx before args, records
// the outcome, and translates an error reply (streams name the streams of
// the call, in order, for BADCURSOR). Scripts that never write
// (verifyScript) leave the session as it is, whatever happens.
func (s *Store) run(ctx context.Context, k keys, script *redis.Script, args []any, streams []string) (any, error) {
	g, err := s.guardFor(ctx, k.name)
	if err != nil {
		return nil, err
	}
	res, err := script.Run(ctx, s.client, k.list(), append(g.args, args...)...).Result()
	if script != verifyScript {
		res = g.done(res, err)
	}
	if err != nil {
		return nil, s.scriptError(ctx, k, err, streams)
	}
	return res, nil
}
