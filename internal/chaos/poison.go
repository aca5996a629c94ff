package chaos

// Poison records: streams of their own ("p-<kind>-NNNN", never a workload
// stream) that a correct runner must park, each of a kind the parking issue
// lists, with the ground truth of what must happen computed here from what
// was written and acked, not from the code under test:
//
//	kind          written (k good events first, seq 1..k)                    parked as (stream, seq, reason)
//	malformed     seq k+1 without the event-ID header, then k+1, k+2 good    stream, k+1, malformed
//	gap           seq k+2 (skips k+1), then k+3 good                         stream, k+2, gap
//	conflict      seq k again with another event ID, then k+1, k+2 good      stream, k, conflict
//	misplaced     k+1 and k+2 good, on a partition other than the key's      misplaced/<partition>/<stream>, k+1, misplaced
//	              murmur2 home (the stream itself goes on at home, unparked)
//	apply-failed  k+1 with payload "poison:apply", then k+2 good             stream, k+1, apply-failed (after the retries)
//
// In every case 1..k must be applied exactly once and nothing above k ever
// (the events after the poison record are held behind the park).
//
// partial-apply (controlplane.ParkPartialApply) is not injected: it needs a
// store that applies part of an event and cannot take it back. The
// AtomicProjection applies an event all or nothing: its script checks every
// write (key types, integers, ACLs) before any runs, and only a failure
// those checks do not foresee makes a partial write; its own tests make one
// by appending an invalid command to the unexported Writes.ops, which this
// package cannot reach, and no event payload makes the counting apply's
// single HINCRBY fail after a check passed.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/projector-dev/projector/controlplane"
	"github.com/projector-dev/projector/framework"
	"github.com/projector-dev/projector/kafkastore"
	"github.com/projector-dev/projector/redischeckpoint"
)

// Poison kinds: each is the park reason its record must cause.
const (
	PoisonMalformed   = controlplane.ParkMalformed
	PoisonGap         = controlplane.ParkGap
	PoisonConflict    = controlplane.ParkConflict
	PoisonMisplaced   = controlplane.ParkMisplaced
	PoisonApplyFailed = controlplane.ParkApplyFailed
)

// PoisonKinds lists the kinds inject writes (not partial-apply; see above).
var PoisonKinds = []string{PoisonMalformed, PoisonGap, PoisonConflict, PoisonMisplaced, PoisonApplyFailed}

// PoisonApplyPayload is the payload of the apply-failed poison event.
var PoisonApplyPayload = []byte("poison:apply")

// DefaultApplyAttempts is kafkarunner.RetryPolicy's default Attempts (tries
// in all, the first included) of a runner without a Retry policy, such as
// the chaos worker's: an apply-failed stream is parked with this many
// attempts, after backoffs of 100ms, 200ms, 400ms and 800ms (Initial 100ms,
// Multiplier 2, Max 5s): about 1.5s after its first attempt.
const DefaultApplyAttempts = 5

// PoisonStream is the ID of the n-th poison stream of kind: p-malformed-0001,
// p-gap-0001, p-conflict-0001, p-misplaced-0001, p-apply-0001.
func PoisonStream(kind string, n int) string {
	name := kind
	if kind == PoisonApplyFailed {
		name = "apply"
	}
	return fmt.Sprintf("p-%s-%04d", name, n)
}

// PoisonApplyError is the error the counting apply fails with on the
// apply-failed poison event (payload PoisonApplyPayload), and nil for any
// other event. It fails every time: retries cannot cure it.
func PoisonApplyError(e framework.Event) error {
	if bytes.Equal(e.Data, PoisonApplyPayload) {
		return fmt.Errorf("chaos: poison event %s sequence %d (%s) cannot be applied", e.StreamID, e.Sequence, e.EventID)
	}
	return nil
}

// countingApplyWithPoison is countingApply that fails on the apply-failed
// poison event first: a worker applying with it parks that event's stream
// after the runner's retries, as apply-failed.
func countingApplyWithPoison(e framework.Event, w *redischeckpoint.Writes) error {
	if err := PoisonApplyError(e); err != nil {
		return err
	}
	return countingApply(e, w)
}

// Roles of the records of a case.
const (
	roleGood   = "good"   // 1..k, must be applied exactly once
	rolePoison = "poison" // must park the stream
	roleHeld   = "held"   // after the poison record: must never be applied
)

// PoisonRecord is one record inject wrote (or tried to), in order.
type PoisonRecord struct {
	Role     string `json:"role"`
	Sequence uint64 `json:"sequence"` // as its sequence header says
	EventID  string `json:"event_id,omitempty"`
	// Partition is where it was written: the acked partition, or for an
	// explicitly placed record the one asked for. Offset is the acked one.
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Misplaced bool   `json:"misplaced,omitempty"` // written off its key's murmur2 partition
	Attempted bool   `json:"attempted"`           // sent; false: not sent after an earlier failure
	Acked     bool   `json:"acked"`
	Err       string `json:"error,omitempty"`
}

// PoisonCase is the ground truth of one poison stream.
type PoisonCase struct {
	Kind   string `json:"kind"`
	Stream string `json:"stream"`
	// ParkedID is the ID the stream must be parked under: Stream, or
	// "misplaced/<partition>/<stream>" for a misplaced record.
	ParkedID string `json:"parked_id"`
	// GoodBefore is k: sequences 1..k must be applied exactly once.
	GoodBefore uint64 `json:"good_before"`
	// ParkedAt and Reason: the parked record's sequence and reason.
	ParkedAt uint64 `json:"parked_at"`
	Reason   string `json:"reason"`
	// Attempts, when not 0, is the attempts the park must record
	// (apply-failed: the runner's Retry.Attempts).
	Attempts int `json:"attempts,omitempty"`
	// Held are the sequences written after the poison record: never to be
	// applied (nor is anything else above GoodBefore).
	Held []uint64 `json:"held,omitempty"`
	// ExpectPark: the poison record was acked, the park must be there.
	ExpectPark bool `json:"expect_park"`
	// Uncertain: a produce failed, so its record may or may not be in the
	// log, and the case got no more records. Then either MayApply is the
	// good sequence that failed (it may be applied once, or not at all;
	// GoodBefore is the one before it; no park is expected), or ParkMaybe
	// says the poison record failed (the stream may be parked as expected,
	// or not at all; 1..k exactly once either way).
	Uncertain bool   `json:"uncertain,omitempty"`
	MayApply  uint64 `json:"may_apply,omitempty"`
	ParkMaybe bool   `json:"park_maybe,omitempty"`

	Records []PoisonRecord `json:"records"`
}

// poisoner writes poison streams to a topic.
type poisoner struct {
	client     *kgo.Client // the murmur2 producer to the topic
	topic      string
	partitions int32
	good       uint64 // k, events before the poison record
	attempts   int    // the runner's apply attempts

	mu     sync.Mutex
	n      map[string]int
	manual *kgo.Client // client's options with a manual partitioner
	home   kgo.TopicPartitioner
}

// newPoisoner returns a poisoner writing with client, a producer (acks=all)
// partitioning by the murmur2 hash of the key, as the workload's, to topic
// of partitions partitions. Close it when done.
func newPoisoner(client *kgo.Client, topic string, partitions int32) *poisoner {
	return &poisoner{
		client: client, topic: topic, partitions: partitions, good: 3, attempts: DefaultApplyAttempts,
		n: map[string]int{},
		// The home partition as franz-go computes it (murmur2 of the key,
		// as the Java client), independently of kafkastore.PartitionFor.
		home: kgo.StickyKeyPartitioner(nil).ForTopic(topic),
	}
}

// Close closes the client inject made for misplaced records.
func (p *poisoner) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.manual != nil {
		p.manual.Close()
		p.manual = nil
	}
}

func (p *poisoner) homeOf(stream string) int32 {
	return int32(p.home.Partition(&kgo.Record{Key: []byte(stream)}, int(p.partitions)))
}

func (p *poisoner) manualClient() (*kgo.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.manual == nil {
		cl, err := kgo.NewClient(append(p.client.Opts(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
		if err != nil {
			return nil, err
		}
		p.manual = cl
	}
	return p.manual, nil
}

// planned is a record to write and its bookkeeping.
type planned struct {
	rec  *kgo.Record
	info PoisonRecord
}

// poisonRecord is workload.go's record with the given headers changed:
// eventID "" drops the event-ID header; value nil keeps the sequence.
func poisonRecord(topic, stream string, seq uint64, eventID string, value []byte) *kgo.Record {
	r := record(stream, seq)
	r.Topic = topic
	if value != nil {
		r.Value = value
	}
	hs := r.Headers[:0]
	for _, h := range r.Headers {
		if h.Key == kafkastore.HeaderEventID {
			if eventID == "" {
				continue
			}
			h.Value = []byte(eventID)
		}
		hs = append(hs, h)
	}
	r.Headers = hs
	return r
}

// inject writes one new poison stream of kind: k good events, the poison
// record, and the events after it, one at a time, each after the previous
// one was acked. A produce that fails ends the case (the rest is not
// sent) and makes it uncertain. The error is for a case that could not be
// planned or whose producer does not partition by murmur2; ctx cancelled
// between records ends the case early (what was written is recorded).
func (p *poisoner) inject(ctx context.Context, kind string) (PoisonCase, error) {
	if !slices.Contains(PoisonKinds, kind) {
		return PoisonCase{}, fmt.Errorf("chaos: no poison kind %q (have %v)", kind, PoisonKinds)
	}
	if kind == PoisonMisplaced && p.partitions < 2 {
		return PoisonCase{}, errors.New("chaos: a misplaced record needs 2 partitions or more")
	}
	p.mu.Lock()
	p.n[kind]++
	stream := PoisonStream(kind, p.n[kind])
	p.mu.Unlock()
	k := p.good
	c := PoisonCase{Kind: kind, Stream: stream, ParkedID: stream, GoodBefore: k, Reason: kind, ExpectPark: true}
	var plan []planned
	add := func(role string, seq uint64, eventID string, value []byte, partition int32) {
		r := poisonRecord(p.topic, stream, seq, eventID, value)
		info := PoisonRecord{Role: role, Sequence: seq, EventID: eventID, Partition: -1, Offset: -1}
		if partition >= 0 {
			r.Partition, info.Partition, info.Misplaced = partition, partition, true
		}
		plan = append(plan, planned{rec: r, info: info})
		if role == roleHeld {
			c.Held = append(c.Held, seq)
		}
	}
	id := func(seq uint64) string { return stream + "-" + strconv.FormatUint(seq, 10) }
	for seq := uint64(1); seq <= k; seq++ {
		add(roleGood, seq, id(seq), nil, -1)
	}
	switch kind {
	case PoisonMalformed:
		// A record of the stream (valid key, at home) that breaks the
		// header contract: no event-ID header. kafkastore parks the stream
		// as malformed, at the sequence its header states (k+1); the event
		// written again properly, and the next, are held behind it.
		add(rolePoison, k+1, "", nil, -1)
		add(roleHeld, k+1, id(k+1), nil, -1)
		add(roleHeld, k+2, id(k+2), nil, -1)
		c.ParkedAt = k + 1
	case PoisonGap:
		add(rolePoison, k+2, id(k+2), nil, -1)
		add(roleHeld, k+3, id(k+3), nil, -1)
		c.ParkedAt = k + 2
	case PoisonConflict:
		add(rolePoison, k, id(k)+"-conflict", nil, -1)
		add(roleHeld, k+1, id(k+1), nil, -1)
		add(roleHeld, k+2, id(k+2), nil, -1)
		c.ParkedAt = k
	case PoisonMisplaced:
		// Well-formed events on a partition other than the key's home: the
		// first parks a pseudo-stream of that partition, the second is held
		// by it. Nothing more is written at home: the stream itself stays
		// at k, unparked.
		wrong := (p.homeOf(stream) + 1) % p.partitions
		add(rolePoison, k+1, id(k+1), nil, wrong)
		add(roleHeld, k+2, id(k+2), nil, wrong)
		c.ParkedID = fmt.Sprintf("misplaced/%d/%s", wrong, stream)
		c.ParkedAt = k + 1
	case PoisonApplyFailed:
		add(rolePoison, k+1, id(k+1), PoisonApplyPayload, -1)
		add(roleHeld, k+2, id(k+2), nil, -1)
		c.ParkedAt = k + 1
		c.Attempts = p.attempts
	}

	for i := range plan {
		c.Records = append(c.Records, plan[i].info)
	}
	for i, pl := range plan {
		if ctx.Err() != nil {
			break // the rest is not sent: settle treats it as never written
		}
		cl := p.client
		if pl.info.Misplaced {
			var err error
			if cl, err = p.manualClient(); err != nil {
				return c, fmt.Errorf("chaos: manual-partitioner client: %w", err)
			}
		}
		// Not ctx: a record in flight is either acked or failed.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		res := cl.ProduceSync(pctx, pl.rec)
		cancel()
		rec := &c.Records[i]
		rec.Attempted = true
		r, err := res.First()
		if err != nil {
			rec.Err = err.Error()
			break
		}
		rec.Acked, rec.Partition, rec.Offset = true, r.Partition, r.Offset
		if !pl.info.Misplaced && r.Partition != p.homeOf(stream) {
			c.settle()
			return c, fmt.Errorf("chaos: %s was written to partition %d, its murmur2 home is %d: the poisoner's producer must partition by murmur2 of the key",
				stream, r.Partition, p.homeOf(stream))
		}
	}
	c.settle()
	return c, nil
}

// settle adjusts the expectations to the first record that was not acked:
// what follows it was not sent.
func (c *PoisonCase) settle() {
	for _, r := range c.Records {
		if r.Acked {
			continue
		}
		switch r.Role {
		case roleGood:
			c.GoodBefore, c.ExpectPark = r.Sequence-1, false
			if r.Attempted {
				c.Uncertain, c.MayApply = true, r.Sequence
			}
		case rolePoison:
			c.ExpectPark = false
			if r.Attempted {
				c.Uncertain, c.ParkMaybe = true, true
			}
		case roleHeld:
			// Held events are never applied, written or not.
		}
		return
	}
}

// PoisonViolation is a Violation of a poison case, with what was found.
// Kinds: lost, duplicated, unexpected (as the workload's checker);
// not-parked (the park expected is missing, or has another reason,
// sequence or attempt count); unexpected-park (a park where none is
// expected).
type PoisonViolation struct {
	Violation
	Detail string `json:"detail"`
}

// checkPoison compares what the projection applied and parked with the
// cases. The applied counts are in the hash p.Key(AppliedKeyPart, stream)
// (sequence -> times applied), the parks in store under projection.
func checkPoison(ctx context.Context, store *redischeckpoint.Store, p *redischeckpoint.AtomicProjection, projection string,
	rc redis.UniversalClient, cases []PoisonCase) ([]PoisonViolation, error) {
	list, err := store.Parked(ctx, projection)
	if err != nil {
		return nil, err
	}
	parked := make(map[string]controlplane.ParkedStream, len(list))
	for _, ps := range list {
		parked[ps.StreamID] = ps
	}
	var out []PoisonViolation
	add := func(kind, stream string, seq uint64, count int64, detail string) {
		out = append(out, PoisonViolation{Violation{Kind: kind, Stream: stream, Sequence: seq, Count: count}, detail})
	}
	for _, c := range cases {
		got, err := rc.HGetAll(ctx, p.Key(AppliedKeyPart, c.Stream)).Result()
		if err != nil {
			return nil, err
		}
		counts := map[uint64]int64{}
		var seqs []uint64
		for field, v := range got {
			seq, err1 := strconv.ParseUint(field, 10, 64)
			n, err2 := strconv.ParseInt(v, 10, 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("%s: field %q = %q", c.Stream, field, v)
			}
			counts[seq] = n
			seqs = append(seqs, seq)
		}
		for seq := uint64(1); seq <= c.GoodBefore; seq++ {
			switch n := counts[seq]; {
			case n == 0:
				add("lost", c.Stream, seq, 0, fmt.Sprintf("%s: acked good event %d never applied", c.Kind, seq))
			case n > 1:
				detail := fmt.Sprintf("%s: good event %d applied %d times", c.Kind, seq, n)
				if c.Kind == PoisonConflict && seq == c.ParkedAt {
					detail += " (the conflicting event at that sequence was applied over it?)"
				}
				add("duplicated", c.Stream, seq, n, detail)
			}
		}
		slices.Sort(seqs)
		for _, seq := range seqs {
			n := counts[seq]
			if seq <= c.GoodBefore || n == 0 {
				continue
			}
			if c.Uncertain && seq == c.MayApply {
				if n > 1 {
					add("duplicated", c.Stream, seq, n, fmt.Sprintf("%s: event %d, whose produce failed, applied %d times", c.Kind, seq, n))
				}
				continue
			}
			what := "beyond the poison record"
			switch {
			case c.ExpectPark && seq == c.ParkedAt && c.Kind != PoisonMalformed:
				what = "the poison event itself"
			case slices.Contains(c.Held, seq):
				what = "a held event (after the poison record)"
			}
			add("unexpected", c.Stream, seq, n, fmt.Sprintf("%s: %s applied (sequence %d, %d times)", c.Kind, what, seq, n))
		}

		ps, ok := parked[c.ParkedID]
		switch {
		case !ok && c.ExpectPark:
			add("not-parked", c.Stream, c.ParkedAt, 0, fmt.Sprintf("%s: %s should be parked at %d (%s), it is not parked", c.Kind, c.ParkedID, c.ParkedAt, c.Reason))
		case ok && (c.ExpectPark || c.ParkMaybe):
			var wrong []string
			if ps.Reason != c.Reason {
				wrong = append(wrong, fmt.Sprintf("reason %s", ps.Reason))
			}
			if ps.Sequence != c.ParkedAt {
				wrong = append(wrong, fmt.Sprintf("sequence %d", ps.Sequence))
			}
			if c.Attempts > 0 && ps.Attempts != c.Attempts {
				wrong = append(wrong, fmt.Sprintf("%d attempts", ps.Attempts))
			}
			if len(wrong) > 0 {
				add("not-parked", c.Stream, c.ParkedAt, 0, fmt.Sprintf("%s: %s should be parked at %d (%s), it is parked with %v (error %q)",
					c.Kind, c.ParkedID, c.ParkedAt, c.Reason, wrong, ps.Error))
			}
		case ok:
			add("unexpected-park", c.Stream, ps.Sequence, 0, fmt.Sprintf("%s: %s parked at %d (%s: %s) though its poison record was never written",
				c.Kind, c.ParkedID, ps.Sequence, ps.Reason, ps.Error))
		}
		if c.ParkedID != c.Stream {
			if ps, ok := parked[c.Stream]; ok {
				add("unexpected-park", c.Stream, ps.Sequence, 0, fmt.Sprintf("%s: the stream itself is parked at %d (%s: %s); only %s should be",
					c.Kind, ps.Sequence, ps.Reason, ps.Error, c.ParkedID))
			}
		}
	}
	return out, nil
}
