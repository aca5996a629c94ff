package redischeckpoint

import "github.com/redis/go-redis/v9"

// Every script takes the keys of one projection (one hash slot), in the
// order of [keys.list]:
//
//	KEYS[1] meta      KEYS[2] fences    KEYS[3] cursors   KEYS[4] heads
//	KEYS[5] serials   KEYS[6] progress  KEYS[7] parked    KEYS[8] resolving
//	KEYS[9] resolutions   KEYS[10] control
//
// and starts with four guard arguments: ARGV[1..3] = partition, epoch and
// token of the caller's fence (an empty partition means unfenced), ARGV[4]
// = the least write serial the caller must find ("" when not tracked).
// Script arguments proper start at ARGV[A + 1].
//
// Sequences travel as decimal strings. Lua numbers are doubles, so the
// arithmetic below on sequences is exact up to 2^53 events per stream.

// luaPrelude defines the guard and helpers. guard(bump) checks the fence and
// the write serial and, when bump is true, raises the serial as the
// script's first write (so that Redis refuses the whole script, not part of
// it, when it cannot write: out of memory, a read-only replica, a failed
// disk). Its error replies are
//
//	FENCED <epoch> <token>     a newer fence or epoch exists: the caller lost
//	                           its partition
//	STATELOST <detail>         fences or the serial went back in time: Redis
//	                           lost writes the caller made or relied on
//	CLOSED                     the version is no longer live or building: a
//	                           rebuild replaced or abandoned it
//	RESETPENDING <epoch>       a replay raised the epoch and its read model
//	                           has not been dropped yet: nobody may write
//	                           into it before the reset
var luaPrelude = `
local A = 4
local function num_less(a, b)
  return #a < #b or (#a == #b and a < b)
end
local function valid_seq(s)
  return s == '0' or string.match(s, '^[1-9]%d*$') ~= nil
end
local seq_less = num_less
local function guard(bump)
  if ARGV[1] == '' then return nil end
  if redis.call('HGET', KEYS[1], 'closed') then
    return redis.error_reply('CLOSED the version was replaced or abandoned by a rebuild')
  end
  local epoch = redis.call('HGET', KEYS[1], 'epoch') or '0'
  local token = redis.call('HGET', KEYS[2], ARGV[1]) or '0'
  if epoch ~= ARGV[2] or token ~= ARGV[3] then
    if num_less(epoch, ARGV[2]) or (epoch == ARGV[2] and num_less(token, ARGV[3])) then
      return redis.error_reply('STATELOST Redis holds epoch ' .. epoch .. ' fencing token ' .. token ..
        ' for partition ' .. ARGV[1] .. ', older than the writer\'s epoch ' .. ARGV[2] .. ' token ' .. ARGV[3])
    end
    return redis.error_reply('FENCED ' .. epoch .. ' ' .. token)
  end
  local reset = redis.call('HMGET', KEYS[10], 'reset_epoch', 'reset_done')
  if num_less(reset[2] or '0', reset[1] or '0') then
    return redis.error_reply('RESETPENDING ' .. reset[1])
  end
  if ARGV[4] ~= '' then
    local floor = ARGV[4]
    local cur = redis.call('HGET', KEYS[5], ARGV[1]) or '0'
    if num_less(cur, floor) then
      return redis.error_reply('STATELOST Redis holds write serial ' .. cur .. ' for partition ' .. ARGV[1] ..
        ', the writer made at least ' .. floor .. ' writes: writes were lost')
    end
    if bump then
      local new = string.format('%d', tonumber(cur) + 1)
      redis.call('HSET', KEYS[5], ARGV[1], new)
      return nil, new
    end
  end
  return nil
end
`

// guardedScript is a script that writes: the prelude, a guard call that
// raises the serial, then body. When the guard raised the serial (the
// writer tracks it), a reply that is not an error comes back as
// {serialMark, serial, body's reply}: the writer learns the exact serial
// its write set (see [guard.done]), which also covers its earlier writes
// whose replies were lost.
func guardedScript(body string) *redis.Script {
	return redis.NewScript(luaPrelude + `
local guard_err, guard_serial = guard(true)
if guard_err then return guard_err end
local function guarded_body()
` + body + `
end
local reply = guarded_body()
if guard_serial and not (type(reply) == 'table' and reply.err) then
  return {'` + serialMark + `', guard_serial, reply}
end
return reply
`)
}

// serialMark starts the reply of a guarded script that carries its serial.
const serialMark = "projector:serial"

// raiseCursors is Lua shared by the scripts that raise cursors: it raises
// the cursors of the streams in ids to seqs (never lowering one), in chunks
// of chunk fields per command, and answers the number written, or a
// "BADCURSOR <i>" error reply for the i-th stream whose stored cursor does
// not parse.
var raiseCursors = `
local function raise_cursors(ids, seqs, chunk)
  local written = 0
  for from = 1, #ids, chunk do
    local to = math.min(from + chunk - 1, #ids)
    local old = redis.call('HMGET', KEYS[3], unpack(ids, from, to))
    local set = {}
    for j = from, to do
      local cur = old[j - from + 1]
      if cur and not valid_seq(cur) then return nil, redis.error_reply('BADCURSOR ' .. j) end
      if not cur or seq_less(cur, seqs[j]) then
        set[#set + 1] = ids[j]
        set[#set + 1] = seqs[j]
      end
    end
    if #set > 0 then redis.call('HSET', KEYS[3], unpack(set)) end
    written = written + #set / 2
  end
  return written
end
`

// advanceScript raises cursors: ARGV[A+1] = chunk size, then stream,
// sequence pairs. It answers the number of cursors written.
var advanceScript = guardedScript(raiseCursors + `
local chunk = tonumber(ARGV[A + 1])
local ids, seqs = {}, {}
for i = A + 2, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  seqs[#seqs + 1] = ARGV[i + 1]
end
local n, err = raise_cursors(ids, seqs, chunk)
if err then return err end
redis.call('HSET', KEYS[1], 'saved', '1')
return n
`)

// checkpointScript is a partition worker's flush: it raises the cursors of
// the streams it applied, records their heads (the last applied event:
// "<sequence>@<partition>/<offset> <event ID>") where the cursor is not
// ahead of them, and raises the partition's progress (the next offset the
// stored state covers). ARGV[A+1] = chunk size, ARGV[A+2] = progress, then
// per stream: stream, sequence, head. It answers the cursors written.
var checkpointScript = guardedScript(raiseCursors + `
local chunk = tonumber(ARGV[A + 1])
local progress = ARGV[A + 2]
local ids, seqs, heads = {}, {}, {}
for i = A + 3, #ARGV, 3 do
  ids[#ids + 1] = ARGV[i]
  seqs[#seqs + 1] = ARGV[i + 1]
  heads[#heads + 1] = ARGV[i + 2]
end
local n, err = raise_cursors(ids, seqs, chunk)
if err then return err end
for from = 1, #ids, chunk do
  local to = math.min(from + chunk - 1, #ids)
  local cur = redis.call('HMGET', KEYS[3], unpack(ids, from, to))
  local set = {}
  for j = from, to do
    if heads[j] ~= '' and cur[j - from + 1] == seqs[j] then
      set[#set + 1] = ids[j]
      set[#set + 1] = heads[j]
    end
  end
  if #set > 0 then redis.call('HSET', KEYS[4], unpack(set)) end
end
local old = redis.call('HGET', KEYS[6], ARGV[1])
if not old or num_less(old, progress) then redis.call('HSET', KEYS[6], ARGV[1], progress) end
redis.call('HSET', KEYS[1], 'saved', '1')
return n
`)

// saveScript replaces the cursors: ARGV[A+1] = chunk size, then stream,
// sequence pairs.
var saveScript = guardedScript(`
local chunk = 2 * tonumber(ARGV[A + 1])
redis.call('UNLINK', KEYS[3], KEYS[4])
for from = A + 2, #ARGV, chunk do
  redis.call('HSET', KEYS[3], unpack(ARGV, from, math.min(from + chunk - 1, #ARGV)))
end
redis.call('HSET', KEYS[1], 'saved', '1')
return 1
`)

// deleteScript drops the cursors, the heads and the saved mark; epoch,
// fences, serials and progress stay, so that tokens and serials keep
// increasing and a replay's progress baseline survives the reset of the
// read model.
var deleteScript = guardedScript(`
redis.call('UNLINK', KEYS[3], KEYS[4])
redis.call('HDEL', KEYS[1], 'saved')
return 1
`)

// acquireScript answers {epoch, token, serial} with a new token for
// ARGV[A+1], the partition, and the partition's current write serial. It
// takes no fence, and refuses a closed version. A token is above every token before it and at least the
// server's clock in microseconds, so a Redis restored from an older
// snapshot does not hand out a token that a live holder already has.
var acquireScript = redis.NewScript(luaPrelude + `
local p = ARGV[A + 1]
if redis.call('HGET', KEYS[1], 'closed') then
  return redis.error_reply('CLOSED the version was replaced or abandoned by a rebuild')
end
-- The key layout's version (ARGV[A + 2]): a newer one was written by a
-- newer Projector, whose keys this one must not touch.
local layout = redis.call('HGET', KEYS[1], 'layout')
if layout and tonumber(layout) > tonumber(ARGV[A + 2]) then
  return redis.error_reply('LAYOUT ' .. layout)
end
if not layout then redis.call('HSET', KEYS[1], 'layout', ARGV[A + 2]) end
local epoch = redis.call('HGET', KEYS[1], 'epoch') or '0'
local now, t = 0, redis.pcall('TIME') -- an ACL user without TIME gets increasing tokens only
if not t.err then now = tonumber(t[1]) * 1000000 + tonumber(t[2]) end
local token = string.format('%d', math.max(tonumber(redis.call('HGET', KEYS[2], p) or '0') + 1, now))
redis.call('HSET', KEYS[2], p, token)
local serial = redis.call('HGET', KEYS[5], p) or '0'
return {epoch, token, serial}
`)

// verifyScript checks a fence and its write serial without writing.
var verifyScript = redis.NewScript(luaPrelude + `
local guard_err = guard(false)
if guard_err then return guard_err end
return 1
`)

// bumpScript starts a new epoch: it drops the old epoch's cursors, heads,
// progress, parked streams and requested resolutions in the same step,
// pushes the audit entries of the parks it clears, ARGV[A+3 .. A+2+K]
// (K = ARGV[A+2]; the list trimmed to ARGV[A+1] entries), and records the
// new epoch's progress baseline, the partition, offset pairs after them
// (where a replay starts each partition). It answers the new epoch.
var bumpScript = redis.NewScript(luaPrelude + `
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('UNLINK', KEYS[3], KEYS[4], KEYS[6], KEYS[7], KEYS[8])
local k = tonumber(ARGV[A + 2])
for i = A + 3, A + 2 + k do redis.call('LPUSH', KEYS[9], ARGV[i]) end
if k > 0 then redis.call('LTRIM', KEYS[9], 0, tonumber(ARGV[A + 1]) - 1) end
for i = A + 3 + k, #ARGV, 2 do redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1]) end
return tostring(epoch)
`)

// parkScript records a parked stream: ARGV[A+1] = stream, ARGV[A+2] = the
// JSON record. A resolution requested for an earlier park of the stream is
// dropped: it was for another event. ARGV[A+3], when not empty, is a
// resolution carried out in part before the stream parked again: it goes
// to the audit list, trimmed to ARGV[A+4] entries.
var parkScript = guardedScript(`
redis.call('HSET', KEYS[7], ARGV[A + 1], ARGV[A + 2])
redis.call('HDEL', KEYS[8], ARGV[A + 1])
if ARGV[A + 3] ~= '' then
  redis.call('LPUSH', KEYS[9], ARGV[A + 3])
  redis.call('LTRIM', KEYS[9], 0, tonumber(ARGV[A + 4]) - 1)
end
return 1
`)

// parkedAt is Lua that answers whether stream id is parked at sequence seq
// since at (its parked_at), comparing the stored JSON's fields as text: a
// sequence as a Lua number loses precision above 2^53, so it is matched in
// the JSON itself.
var parkedAt = `
local function parked_at(id, seq, at)
  local old = redis.call('HGET', KEYS[7], id)
  if not old then return false end
  local ok, rec = pcall(cjson.decode, old)
  -- A record without parked_at (the partial-apply park written by the
  -- apply script) matches the zero time, as encoding/json reads it.
  if not ok or (rec.parked_at or '0001-01-01T00:00:00Z') ~= at then return false end
  return string.find(old, '"sequence":' .. seq .. ',', 1, true) ~= nil or string.find(old, '"sequence":' .. seq .. '}', 1, true) ~= nil
end
`

// updateParkedScript replaces a parked stream's record, ARGV[A+2], only
// while the stream ARGV[A+1] is still parked at sequence ARGV[A+3] since
// ARGV[A+4] (its parked_at): an admin may have resolved it. It
// answers 1 when it replaced the record.
var updateParkedScript = guardedScript(parkedAt + `
if not parked_at(ARGV[A + 1], ARGV[A + 3], ARGV[A + 4]) then return 0 end
redis.call('HSET', KEYS[7], ARGV[A + 1], ARGV[A + 2])
return 1
`)

// requestScript records a requested resolution, ARGV[A+2], for the stream
// ARGV[A+1] while it is parked at sequence ARGV[A+3] since ARGV[A+4] and no
// other request is pending (one may be carried out right now). It answers
// 1 when it recorded it, 2 when another request is pending.
var requestScript = guardedScript(parkedAt + `
if not parked_at(ARGV[A + 1], ARGV[A + 3], ARGV[A + 4]) then return 0 end
if redis.call('HEXISTS', KEYS[8], ARGV[A + 1]) == 1 then return 2 end
redis.call('HSET', KEYS[8], ARGV[A + 1], ARGV[A + 2])
return 1
`)

// unparkScript removes the stream ARGV[A+1] parked at sequence ARGV[A+3]
// since ARGV[A+4], with its request, and pushes the resolution ARGV[A+2] to
// the audit list, trimmed to ARGV[A+5] entries. ARGV[A+6], when not empty,
// is the "at" of the request carried out: a request replaced meanwhile
// leaves the stream parked. It answers 1 when it unparked the stream.
var unparkScript = guardedScript(parkedAt + `
if not parked_at(ARGV[A + 1], ARGV[A + 3], ARGV[A + 4]) then return 0 end
if ARGV[A + 6] ~= '' then
  local req = redis.call('HGET', KEYS[8], ARGV[A + 1])
  if req then
    local ok, r = pcall(cjson.decode, req)
    if not ok or r.at ~= ARGV[A + 6] then return 0 end
  end
end
redis.call('HDEL', KEYS[7], ARGV[A + 1])
redis.call('HDEL', KEYS[8], ARGV[A + 1])
redis.call('LPUSH', KEYS[9], ARGV[A + 2])
redis.call('LTRIM', KEYS[9], 0, tonumber(ARGV[A + 5]) - 1)
return 1
`)

// beginReplayScript is a replay's first step, in one script: it pauses the
// replicas (unless paused already: that pause is kept as it was), raises the
// epoch, drops the old epoch's cursors, heads, progress, parked streams and
// requested resolutions, records the new epoch's progress baseline and
// requests the reset of the read model for the new epoch. From then on
// every fenced write is refused: a fence of the old epoch as FENCED, one of
// the new epoch as RESETPENDING until the reset is done. Arguments:
//
//	ARGV[A+1]  the epoch the replay starts from: the epoch is raised only
//	           while it is still that one (a resumed replay raises it once)
//	ARGV[A+2..A+4]  paused_by, pause_reason, paused_at
//	ARGV[A+5]  how many audit entries the list keeps
//	ARGV[A+6]  K, the parked streams the caller read
//	then K stream, record pairs as the caller read them (the raise is made
//	only while the parked streams are exactly those), K audit entries (the
//	resolutions of the cleared parks), and partition, offset pairs (where
//	the replay starts each partition).
//
// It answers {"RAISED", new epoch}, {"EARLIER", epoch} when the epoch was
// raised before (it only pauses), or {"CHANGED", epoch} when the parked
// streams changed since the caller read them (nothing done).
var beginReplayScript = redis.NewScript(luaPrelude + `
local epoch = redis.call('HGET', KEYS[1], 'epoch') or '0'
local function pause()
  if redis.call('HGET', KEYS[10], 'paused') ~= '1' then
    redis.call('HSET', KEYS[10], 'paused', '1', 'paused_by', ARGV[A + 2], 'pause_reason', ARGV[A + 3], 'paused_at', ARGV[A + 4])
  end
end
if epoch ~= ARGV[A + 1] then
  if num_less(epoch, ARGV[A + 1]) then
    return redis.error_reply('STATELOST Redis holds epoch ' .. epoch .. ', older than epoch ' .. ARGV[A + 1] .. ' the replay started from')
  end
  pause()
  return {'EARLIER', epoch}
end
local k = tonumber(ARGV[A + 6])
if redis.call('HLEN', KEYS[7]) ~= k then return {'CHANGED', epoch} end
for i = 0, k - 1 do
  if redis.call('HGET', KEYS[7], ARGV[A + 7 + 2 * i]) ~= ARGV[A + 8 + 2 * i] then return {'CHANGED', epoch} end
end
pause()
local new = tostring(redis.call('HINCRBY', KEYS[1], 'epoch', 1))
redis.call('UNLINK', KEYS[3], KEYS[4], KEYS[6], KEYS[7], KEYS[8])
local audits = A + 7 + 2 * k
for i = audits, audits + k - 1 do redis.call('LPUSH', KEYS[9], ARGV[i]) end
if k > 0 then redis.call('LTRIM', KEYS[9], 0, tonumber(ARGV[A + 5]) - 1) end
for i = audits + k, #ARGV, 2 do redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1]) end
local requested = redis.call('HGET', KEYS[10], 'reset_epoch') or '0'
if num_less(requested, new) then redis.call('HSET', KEYS[10], 'reset_epoch', new) end
return {'RAISED', new}
`)

// claimRefusal is Lua that answers the error reply refusing a step of a
// reset unless replica holder still holds the claim key claim and the
// control hash's reset_done is below epoch; nil when the step may go on.
var claimRefusal = `
local function claim_refusal(claim, control, holder, epoch)
  local held = redis.call('GET', claim)
  if held ~= holder then
    return redis.error_reply('RESETCLAIM the claim is held by ' .. (held or 'nobody') .. ' now')
  end
  local done = redis.call('HGET', control, 'reset_done') or '0'
  if not num_less(done, epoch) then
    return redis.error_reply('RESETCLAIM the reset of epoch ' .. epoch .. ' was done already')
  end
  return nil
end
`

// claimedUnlinkScript unlinks KEYS[3..] (a batch of read-model keys) while
// replica ARGV[1] holds the claim KEYS[1] on the reset of epoch ARGV[2]
// and the control hash KEYS[2] does not record that reset as done. It
// answers the keys unlinked.
var claimedUnlinkScript = redis.NewScript(luaPrelude + claimRefusal + `
local refusal = claim_refusal(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if refusal then return refusal end
if #KEYS < 3 then return 0 end
return redis.call('UNLINK', unpack(KEYS, 3))
`)

// claimedDeleteScript is deleteScript for a reset: KEYS[11] is the claim
// key, ARGV[A+1] the replica, ARGV[A+2] the epoch; it deletes only while
// the claim holds as in claimedUnlinkScript.
var claimedDeleteScript = redis.NewScript(luaPrelude + claimRefusal + `
local refusal = claim_refusal(KEYS[11], KEYS[10], ARGV[A + 1], ARGV[A + 2])
if refusal then return refusal end
local guard_err = guard(true)
if guard_err then return guard_err end
redis.call('UNLINK', KEYS[3], KEYS[4])
redis.call('HDEL', KEYS[1], 'saved')
return 1
`)

// completeResetScript records the reset of epoch ARGV[2] as done in the
// control hash KEYS[2] while replica ARGV[1] holds the claim KEYS[1]. It
// answers 1 when it did, 2 when the reset was recorded as done already
// (by anyone: nothing to mark).
var completeResetScript = redis.NewScript(luaPrelude + claimRefusal + `
local done = redis.call('HGET', KEYS[2], 'reset_done') or '0'
if not num_less(done, ARGV[2]) then return 2 end
local refusal = claim_refusal(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if refusal then return refusal end
redis.call('HSET', KEYS[2], 'reset_done', ARGV[2])
return 1
`)

// claimResetScript claims the reset of epoch ARGV[2] for replica ARGV[1]:
// it sets the claim KEYS[1] for ARGV[3] milliseconds unless another
// replica holds it or the control hash KEYS[2] records that reset as done.
// It answers 1 when it claimed, 0 otherwise.
var claimResetScript = redis.NewScript(luaPrelude + `
local done = redis.call('HGET', KEYS[2], 'reset_done') or '0'
if not num_less(done, ARGV[2]) then return 0 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then return 1 end
return 0
`)
