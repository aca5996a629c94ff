package redischeckpoint

// applyScript applies a batch of events of an AtomicProjection, skipping
// those at or below their stream's cursor. ARGV[A+1] = number of events,
// then per event: stream, sequence, event ID, position ("<partition>/<offset>"
// or ""), number of writes, and per write: its name, its number of
// arguments, the arguments (see Writes).
//
// Each event is applied whole or not at all: check_event (luaChecks)
// checks all its writes before any of them runs. The script answers
//
//	{status, processed, applied, skipped, detail[, index, op, key, field, code]}
//
// where processed events are applied or skipped, and their cursors and
// heads are written in the same script whatever the status:
//
//	OK       all events processed.
//	GAP      event processed+1 does not follow its cursor (detail = cursor).
//	REFUSED  event processed+1 was refused and nothing of it written:
//	         detail = the reason, index and op = the write (0 and HSET when
//	         the cursors themselves cannot be written), key and field =
//	         where, code = WRONGTYPE, NOTINT, OVERFLOW, NOPERM, ... .
//	PARTIAL  as REFUSED, but a command the checks let through failed
//	         after earlier commands of the event ran: the event is partly
//	         applied and its cursor not raised; the script parks the
//	         stream (reason "partial-apply") in the same step.
//
// A corrupt cursor is the error reply "BADCURSOR <event>", after the
// cursors of the events before it are written.
//
// Redis refuses a script's commands for lack of memory, on a read-only
// replica or after a failed disk write only up to its first write (then
// it lets the script finish), and the guard's serial is the first write
// of a fenced script: those cannot split an event either, and an
// unfenced script's first write failing is a REFUSED event 1.
var applyScript = guardedScript(luaIntegers + luaChecks + luaPacked + `
local cursors = {}
local function cursor_of(stream)
  local c = cursors[stream]
  if c == nil then
    c = redis.call('HGET', KEYS[3], stream) or '0'
    if not valid_seq(c) then return nil end
    cursors[stream] = c
  end
  return c
end

-- The cursors and heads are written after the events' writes, also when
-- an event is refused: make sure they can be, before any event's write.
for _, key in ipairs({KEYS[1], KEYS[3], KEYS[4]}) do
  local t, why, code = redis.pcall('TYPE', key), nil, nil
  if t.err then
    why, code = 'TYPE failed: ' .. t.err, error_code(t.err)
  elseif t.ok ~= 'none' and t.ok ~= 'hash' then
    why, code = 'the key holds a ' .. t.ok .. ', not a hash', 'WRONGTYPE'
  elseif acl and not (acl('HSET', key, 'f', 'v') and acl('HGET', key, 'f')) then
    why, code = 'the ACL user may not run HSET and HGET on the key', 'NOPERM'
  end
  if why then return {'REFUSED', 0, 0, 0, why, 0, 'HSET', key, '', code} end
end

local pos = A + 2
local n = tonumber(ARGV[A + 1])
local applied, skipped = 0, 0
local changed, heads = {}, {}
-- head_at keeps, per stream, the highest offset applied in a partition:
-- a resume applies events that waited for a missing one out of offset
-- order, and a head's offset says that every record of the stream up to
-- it was processed.
local floors = {}
local function head_at(stream, at)
  local p, o = string.match(at, '^(%d+)/(%d+)$')
  if not p then return at end
  local floor = floors[stream]
  if floor == nil then
    floor = false
    local h = redis.call('HGET', KEYS[4], stream)
    if h then
      local hp, ho = string.match(h, '^%d+@(%d+)/(%d+) ')
      if hp then floor = {hp, ho} end
    end
  end
  if floor and floor[1] == p and num_less(o, floor[2]) then
    at = p .. '/' .. floor[2]
  else
    floor = {p, o}
  end
  floors[stream] = floor
  return at
end
local function write_cursors()
  for s, c in pairs(changed) do redis.call('HSET', KEYS[3], s, c) end
  for s, h in pairs(heads) do redis.call('HSET', KEYS[4], s, h) end
  if applied > 0 then redis.call('HSET', KEYS[1], 'saved', '1') end
end
for e = 1, n do
  local stream, seq, eid, at, nops = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3], tonumber(ARGV[pos + 4])
  local first = pos + 5
  pos = first
  for _ = 1, nops do pos = pos + 2 + tonumber(ARGV[pos + 1]) end
  local cur = cursor_of(stream)
  if cur == nil then
    write_cursors()
    return redis.error_reply('BADCURSOR ' .. e)
  end
  if not seq_less(cur, seq) then
    skipped = skipped + 1
  elseif string.format('%d', tonumber(cur) + 1) ~= seq then
    write_cursors()
    return {'GAP', e - 1, applied, skipped, cur}
  else
    current = nil
    local ok, refused = pcall(check_event, first, nops)
    if not ok then refused = refusal('ERR', '', '', 'the checks failed: ' .. tostring(refused)) end
    if refused then
      write_cursors()
      return {'REFUSED', e - 1, applied, skipped, refused.reason, current and current.index or 0,
        current and current.op or '', refused.key, refused.field, refused.code}
    end
    local ran, c, err = run_commands()
    if c then
      write_cursors()
      local status = 'PARTIAL'
      if ran == 0 then status = 'REFUSED' end -- the failed command was the event's first: nothing of it ran
      if status == 'PARTIAL' then
        -- Park the stream in the same script, so that no later owner
        -- (after a crash before the runner parks it) applies the event
        -- again over its partial writes.
        pcall(function()
          local rec = {stream_id = stream, sequence = tonumber(seq), event_id = eid,
            reason = 'partial-apply', error = 'the store applied part of this event (' .. c.cmd[1] .. ' failed: ' .. tostring(err) ..
            '); replay the projection'}
          local pp, po = string.match(at, '^(%d+)/(%d+)$')
          if pp then rec.position = {partition = tonumber(pp), offset = tonumber(po)} end
          redis.pcall('HSET', KEYS[7], stream, cjson.encode(rec))
        end)
      end
      return {status, e - 1, applied, skipped, c.cmd[1] .. ' failed after ' .. ran .. ' of the event\'s ' .. #commands ..
        ' commands ran: ' .. err, c.index, c.op, c.cmd[2], c.field, error_code(err)}
    end
    applied = applied + 1
    cursors[stream] = seq
    changed[stream] = seq
    if at ~= '' then heads[stream] = seq .. '@' .. head_at(stream, at) .. ' ' .. eid else heads[stream] = seq .. ' ' .. eid end
  end
end
write_cursors()
return {'OK', n, applied, skipped, ''}
`)
