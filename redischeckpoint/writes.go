package redischeckpoint

import (
	"fmt"
	"strconv"
	"strings"
)

// Writes records the Redis writes of one event. Every key must be a
// read-model key of the projection (see [AtomicProjection.Key]).
//
// The apply script checks all writes of an event against what Redis holds
// (and what the event's earlier writes leave) before it runs any of them,
// so an event is applied whole or not at all: see [ErrWriteRefused]. A few
// mistakes are refused before anything is sent ([ErrInvalidWrite]), and
// so is the event and every later event of the batch:
//
//   - a key outside the read-model namespace;
//   - a write larger than [MaxWriteValues], or an event whose writes are
//     larger than [MaxEventValues] together;
//   - one key used as two types in one event (a hash by HSet, HDel,
//     HIncrBy, Replace and ReplaceFields, also as a sum or count; a set by
//     SAdd and SRem; a string by Set and IncrBy) without a Del or Set of it
//     in between. Redis deletes a hash or set when its last field or
//     member goes, which the script does not track, so it would otherwise
//     refuse a valid event or depend on it.
//
// Writes of no fields or members (SAdd with no members, ReplaceFields with
// no fields) record nothing.
type Writes struct {
	prefix string
	ops    []op
	err    *WriteError // the first mistake; event fields are set by the caller
	size   int         // the sizes of the ops, summed
	// types is the type each key is used as since the event's last Del or
	// Set of it.
	types map[string]keyType
	seen  map[string]struct{} // scratch for duplicate fields
	// packedSums are the sums keys of the event's ReplacePacked writes:
	// one event adds to a sums key through one ReplacePacked only.
	packedSums map[string]struct{}
}

type op struct {
	name string
	args []string
}

type keyType uint8

const (
	hashKey keyType = iota + 1
	setKey
	stringKey
)

func (t keyType) String() string {
	switch t {
	case hashKey:
		return "a hash"
	case setKey:
		return "a set"
	}
	return "a string"
}

// keyUse is a key a write touches and the type it uses it as; 0 for Del
// and Set, which take any type.
type keyUse struct {
	key string
	typ keyType
}

// HashField names one field of one hash.
type HashField struct {
	Key   string
	Field string
}

// MaxReplaceFields is the most fields one ReplaceFields call takes (with
// no sums or counts; see [MaxWriteValues]).
const MaxReplaceFields = MaxWriteValues

// Size limits of the writes of one event, checked before anything is sent
// (a write above them is an [ErrInvalidWrite]). The script runs the
// members and fields of a write in commands of at most 1000 values, so
// these bound how long one script keeps Redis busy, not Lua. A write's
// size is the number of fields and members it changes: 1 for HSet,
// HIncrBy, Set, IncrBy and Del, the fields for HDel, the members for SAdd
// and SRem, 1+len(sums)+len(counts) for Replace, and len(fields) times
// 1+len(sums)+len(counts) for ReplaceFields.
const (
	// MaxWriteValues is the largest size of one write.
	MaxWriteValues = 10_000
	// MaxEventValues is the largest sum of the sizes of one event's writes.
	MaxEventValues = 100_000
)

// reset prepares w for the next event.
func (w *Writes) reset() {
	w.ops, w.err, w.size = w.ops[:0], nil, 0
	clear(w.types)
	clear(w.packedSums)
}

// Key returns the read-model key made of parts, like [AtomicProjection.Key].
func (w *Writes) Key(parts ...string) string { return w.prefix + strings.Join(parts, ":") }

// fail records the first mistake of the event.
func (w *Writes) fail(name, key, field, code, reason string) {
	if w.err == nil {
		w.err = &WriteError{Kind: ErrInvalidWrite, Index: len(w.ops) + 1, Op: name, Key: key, Field: field, Code: code, Reason: reason}
	}
}

// add records the write name of size values on keys, with its script
// arguments, after checking the keys, the limits and the key types.
func (w *Writes) add(name string, size int, keys []keyUse, args ...string) {
	if w.err != nil {
		return
	}
	for _, k := range keys {
		if !strings.HasPrefix(k.key, w.prefix) || len(k.key) == len(w.prefix) {
			w.fail(name, k.key, "", "INVALID", fmt.Sprintf("key outside the read-model namespace %q", w.prefix))
			return
		}
	}
	if size == 0 {
		return
	}
	if size > MaxWriteValues {
		w.fail(name, keys[0].key, "", "LIMIT", fmt.Sprintf("the write changes %d fields or members, at most %d (MaxWriteValues)", size, MaxWriteValues))
		return
	}
	if w.size+size > MaxEventValues {
		w.fail(name, keys[0].key, "", "LIMIT", fmt.Sprintf("the event's writes change %d fields or members, at most %d (MaxEventValues)", w.size+size, MaxEventValues))
		return
	}
	if w.types == nil {
		w.types = map[string]keyType{}
	}
	for _, k := range keys {
		switch was, ok := w.types[k.key]; {
		case k.typ == 0:
			delete(w.types, k.key) // Del; Set records a string below
		case ok && was != k.typ:
			w.fail(name, k.key, "", "INVALID", fmt.Sprintf("the event uses the key as %v and then as %v without a Del or Set of it in between", was, k.typ))
			return
		default:
			w.types[k.key] = k.typ
		}
	}
	if name == "SET" {
		w.types[keys[0].key] = stringKey
	}
	w.size += size
	w.ops = append(w.ops, op{name: name, args: args})
}

// HSet sets field of the hash at key.
func (w *Writes) HSet(key, field, value string) {
	w.add("HSET", 1, []keyUse{{key, hashKey}}, key, field, value)
}

// HDel deletes fields of the hash at key: at most [MaxWriteValues].
func (w *Writes) HDel(key string, fields ...string) {
	w.add("HDEL", len(fields), []keyUse{{key, hashKey}}, append([]string{key}, fields...)...)
}

// HIncrBy adds n to the integer field of the hash at key (absent counts as
// 0). The event is refused if the field holds something else than an
// integer or the sum leaves int64.
func (w *Writes) HIncrBy(key, field string, n int64) {
	w.add("HINCRBY", 1, []keyUse{{key, hashKey}}, key, field, strconv.FormatInt(n, 10))
}

// Set sets the string at key, whatever the key held.
func (w *Writes) Set(key, value string) { w.add("SET", 1, []keyUse{{key, 0}}, key, value) }

// IncrBy adds n to the integer at key (absent counts as 0). The event is
// refused if the key holds something else than an integer or the sum
// leaves int64.
func (w *Writes) IncrBy(key string, n int64) {
	w.add("INCRBY", 1, []keyUse{{key, stringKey}}, key, strconv.FormatInt(n, 10))
}

// Del deletes key, whatever it held.
func (w *Writes) Del(key string) { w.add("DEL", 1, []keyUse{{key, 0}}, key) }

// SAdd adds members to the set at key: at most [MaxWriteValues].
func (w *Writes) SAdd(key string, members ...string) {
	w.add("SADD", len(members), []keyUse{{key, setKey}}, append([]string{key}, members...)...)
}

// SRem removes members from the set at key: at most [MaxWriteValues].
func (w *Writes) SRem(key string, members ...string) {
	w.add("SREM", len(members), []keyUse{{key, setKey}}, append([]string{key}, members...)...)
}

// Replace sets the integer field of the hash at key to value, replacing
// (not adding to) what was there, and keeps aggregates right inside the
// script: every sum field is adjusted by the difference to the old value
// (absent counts as 0; unchanged when the difference is 0), and every
// count field is raised by one when the field did not exist before. A
// correction of a metered value is one Replace. The arithmetic is exact
// over int64; the event is refused if the old value, a sum or a count is
// not an integer, or a sum or count would leave int64.
func (w *Writes) Replace(key, field string, value int64, sums, counts []HashField) {
	keys := make([]keyUse, 0, 1+len(sums)+len(counts))
	keys = append(keys, keyUse{key, hashKey})
	args := make([]string, 0, 5+2*(len(sums)+len(counts)))
	args = append(args, key, field, strconv.FormatInt(value, 10), strconv.Itoa(len(sums)))
	for _, s := range sums {
		keys = append(keys, keyUse{s.Key, hashKey})
		args = append(args, s.Key, s.Field)
	}
	args = append(args, strconv.Itoa(len(counts)))
	for _, c := range counts {
		keys = append(keys, keyUse{c.Key, hashKey})
		args = append(args, c.Key, c.Field)
	}
	w.add("REPLACE", 1+len(sums)+len(counts), keys, args...)
}

// ReplaceFields is Replace for many fields of one hash at once, in a few
// commands instead of several per field: it sets the fields of the hash at
// key to values (replacing what was there), sets the same fields of every
// hash in sums to their value adjusted by the differences (absent counts
// as 0), and raises the same fields of every hash in counts by one for
// each field that did not exist before. One day's quarter-hour values of a
// meter, summed per balance group and day, is one ReplaceFields. Its size
// is len(fields) times 1+len(sums)+len(counts), at most [MaxWriteValues];
// fields must not repeat. The arithmetic is exact over int64, and the
// event is refused like for Replace.
func (w *Writes) ReplaceFields(key string, fields []string, values []int64, sums, counts []string) {
	const name = "REPLACE_FIELDS"
	if len(fields) != len(values) {
		w.fail(name, key, "", "INVALID", fmt.Sprintf("%d fields but %d values", len(fields), len(values)))
		return
	}
	if w.seen == nil {
		w.seen = map[string]struct{}{}
	}
	clear(w.seen)
	for _, f := range fields {
		if _, dup := w.seen[f]; dup {
			w.fail(name, key, f, "INVALID", "the field is given twice")
			return
		}
		w.seen[f] = struct{}{}
	}
	keys := make([]keyUse, 0, 1+len(sums)+len(counts))
	keys = append(keys, keyUse{key, hashKey})
	for _, k := range sums {
		keys = append(keys, keyUse{k, hashKey})
	}
	for _, k := range counts {
		keys = append(keys, keyUse{k, hashKey})
	}
	args := make([]string, 0, 4+2*len(fields)+len(sums)+len(counts))
	args = append(args, key, strconv.Itoa(len(fields)))
	args = append(args, fields...)
	for _, v := range values {
		args = append(args, strconv.FormatInt(v, 10))
	}
	args = append(args, strconv.Itoa(len(sums)))
	args = append(args, sums...)
	args = append(args, strconv.Itoa(len(counts)))
	args = append(args, counts...)
	w.add(name, len(fields)*(1+len(sums)+len(counts)), keys, args...)
}

// packedLayout: the bounds of a string ReplacePacked writes (the layout is
// described at luaPacked).
const (
	// MaxPackedSegments is the number of segments of a packed string.
	MaxPackedSegments = 31
	// MaxPackedSlots is the most values of one segment.
	MaxPackedSlots = 100
	// MaxPackedValue bounds the magnitude of a packed value: |v| < 2^47
	// (6 bytes).
	MaxPackedValue = 1<<47 - 1
	// MaxPackedSum bounds the magnitude of an aggregate slot: 2^53.
	MaxPackedSum = 1 << 53
)

// PackedTarget names the aggregates of a segment that ReplacePacked keeps
// right: Sums and FlagSums are strings of 8-byte big-endian two's
// complement integers (slot i at byte 8*i; an absent key or a short
// string reads as zeros), whose slots FirstSlot.. add the segment's values
// and flags (0 or 1); Count is a hash field counting the segments present.
// An empty key leaves that aggregate out.
//
// Slots is the length of the series in slots: a new sums string is
// allocated at its whole length at once (a string grown by writes at
// rising offsets takes up to twice its length).
type PackedTarget struct {
	Sums, FlagSums string
	Count          HashField
	FirstSlot      int
	Slots          int
}

// ReplacePacked replaces segment seg of the packed string at key by values
// and their flags, and moves the segment's aggregates: what the segment
// held before (when it was present) is taken out of from's sums, flag sums
// and count, and the new contents are added to to's. A replacement in
// place passes the same target twice; a segment that moves to other
// aggregates names the old ones in from. It reads the old segment and the
// sums inside the script, like Replace, so a correction replaces and never
// adds, in a handful of commands (GETRANGE and SETRANGE) whatever the
// number of values.
//
// The packed string holds up to [MaxPackedSegments] segments of up to
// [MaxPackedSlots] signed values with a flag bit each, at one width of 1 to
// 6 bytes per value that grows when a value needs it: about 2 bytes per
// value for meter readings below 32,768, where a hash field costs about
// ten. Values must lie within ±[MaxPackedValue]; a sum leaving
// ±[MaxPackedSum] refuses the event (OVERFLOW); a first delivery, added
// by BITFIELD INCRBY, is refused when a sum it adds to lies outside ±2^52.
// Its size is len(values) times 3. The key must not be written otherwise
// in the same event, and a sums key takes part in one ReplacePacked per
// event.
func (w *Writes) ReplacePacked(key string, seg int, values []int64, flags []bool, from, to PackedTarget) {
	const name = "REPLACE_PACKED"
	switch {
	case seg < 0 || seg >= MaxPackedSegments:
		w.fail(name, key, "", "INVALID", fmt.Sprintf("segment %d outside 0-%d", seg, MaxPackedSegments-1))
		return
	case len(values) == 0 || len(values) > MaxPackedSlots:
		w.fail(name, key, "", "INVALID", fmt.Sprintf("%d values: want 1 to %d", len(values), MaxPackedSlots))
		return
	case len(flags) != len(values):
		w.fail(name, key, "", "INVALID", fmt.Sprintf("%d values but %d flags", len(values), len(flags)))
		return
	case from.FirstSlot < 0 || to.FirstSlot < 0 || from.FirstSlot+len(values) > max(from.Slots, 0) && (from.Sums != "" || from.FlagSums != "") ||
		to.FirstSlot+len(values) > max(to.Slots, 0) && (to.Sums != "" || to.FlagSums != ""):
		w.fail(name, key, "", "INVALID", "the segment's slots lie outside a target's Slots")
		return
	}
	if _, used := w.types[key]; used {
		w.fail(name, key, "", "INVALID", "the packed key is written twice in one event")
		return
	}
	keys := []keyUse{{key, stringKey}}
	args := make([]string, 0, 14+len(values))
	args = append(args, key, strconv.Itoa(seg), strconv.Itoa(len(values)))
	for i, v := range values {
		if v > MaxPackedValue || v < -MaxPackedValue {
			w.fail(name, key, strconv.Itoa(i), "INVALID", fmt.Sprintf("value %d outside ±%d", v, int64(MaxPackedValue)))
			return
		}
		args = append(args, strconv.FormatInt(v, 10))
	}
	fl := make([]byte, len(flags))
	for i, f := range flags {
		fl[i] = '0'
		if f {
			fl[i] = '1'
		}
	}
	args = append(args, string(fl))
	for _, t := range []PackedTarget{from, to} {
		for _, k := range []string{t.Sums, t.FlagSums} {
			if k != "" {
				keys = append(keys, keyUse{k, stringKey})
			}
		}
		if t.Count.Key != "" {
			keys = append(keys, keyUse{t.Count.Key, hashKey})
		}
		args = append(args, t.Sums, t.FlagSums, t.Count.Key, t.Count.Field, strconv.Itoa(t.FirstSlot), strconv.Itoa(t.Slots))
	}
	width, region := packedRegion(values, flags)
	args = append(args, strconv.Itoa(width), region)
	// A first delivery's increments of to's sums, ready for BITFIELD.
	for _, flagged := range []bool{false, true} {
		at := len(args)
		args = append(args, "")
		n := 0
		for q, v := range values {
			if flagged {
				if !flags[q] {
					continue
				}
				v = 1
			} else if v == 0 {
				continue
			}
			args = append(args, "INCRBY", "i64", "#"+strconv.Itoa(to.FirstSlot+q), strconv.FormatInt(v, 10))
			n++
		}
		args[at] = strconv.Itoa(n)
	}
	if w.packedSums == nil {
		w.packedSums = map[string]struct{}{}
	}
	for _, t := range []PackedTarget{from, to} {
		for _, k := range []string{t.Sums, t.FlagSums} {
			if _, dup := w.packedSums[k]; dup && k != "" {
				w.fail(name, k, "", "INVALID", "two ReplacePacked of one event add to the same sums")
				return
			}
		}
	}
	for _, t := range []PackedTarget{from, to} {
		for _, k := range []string{t.Sums, t.FlagSums} {
			if k != "" {
				w.packedSums[k] = struct{}{}
			}
		}
	}
	w.add(name, 3*len(values), keys, args...)
}

// packedRegion returns a segment as the script stores it at the least
// width its values need: 13 bytes of flags (slot q is bit 7-q%8 of byte
// q/8), then the values, big-endian two's complement.
func packedRegion(values []int64, flags []bool) (int, string) {
	width := 1
	for _, v := range values {
		for v >= 1<<(8*width-1) || v < -(1<<(8*width-1)) {
			width++
		}
	}
	b := make([]byte, packedFlagBytes+len(values)*width)
	for q, f := range flags {
		if f {
			b[q/8] |= 1 << (7 - q%8)
		}
	}
	at := packedFlagBytes
	for _, v := range values {
		u := uint64(v)
		for i := width - 1; i >= 0; i-- {
			b[at+i] = byte(u)
			u >>= 8
		}
		at += width
	}
	return width, string(b)
}

// packedFlagBytes is the size of a segment's flags.
const packedFlagBytes = (MaxPackedSlots + 7) / 8

// RefuseIfExists refuses the event, with code (a word such as "CLOSED")
// and reason, when key exists in Redis as the batch's earlier events left
// it: a guard that a later step of the application (closing a period,
// say) can set to stop events that would reach data already dropped. The
// refusal is an [ErrWriteRefused] like any other: nothing of the event is
// written, and the runner retries and parks its stream. It writes nothing
// and costs one EXISTS.
func (w *Writes) RefuseIfExists(key, code, reason string) {
	if code == "" || strings.ContainsAny(code, " \t\n") {
		w.fail("REFUSE_IF_EXISTS", key, "", "INVALID", fmt.Sprintf("code %q: want one word", code))
		return
	}
	w.add("REFUSE_IF_EXISTS", 1, []keyUse{{key, 0}}, key, code, reason)
}
