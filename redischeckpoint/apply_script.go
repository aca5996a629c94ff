package redischeckpoint

// applyScript applies a batch of events of an AtomicProjection, skipping
// those at or below their stream's cursor. ARGV[A+1] = number of events,
// ARGV[A+2] = S, the number of streams, ARGV[A+3 .. A+2+S] = the streams,
// then per event: its stream's index in them (1-based), sequence, the
// sequence before it (the cursor it follows), event ID, position ("<partition>/<offset>" or ""), number of writes, and per
// write: its name, its number of arguments, the arguments (see Writes).
// The streams' cursors and heads are read in one HMGET each and written
// in one HSET each (in chunks), for the whole call.
//
// Each event is applied whole or not at all: an event of a single write
// that is one Redis command runs it (direct, run_direct: Redis runs a
// command whole or not at all); any other event is checked by
// check_event (luaChecks) before any of its writes runs. The script
// answers
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

local n, nstreams = tonumber(ARGV[A + 1]), tonumber(ARGV[A + 2])
local S = A + 2 -- ARGV[S + i] is stream i
-- The stored cursors and heads by stream index.
local stored_cursor, stored_head = {}, {}
for from = 1, nstreams, CHUNK do
  local to = math.min(from + CHUNK - 1, nstreams)
  local c = redis.call('HMGET', KEYS[3], unpack(ARGV, S + from, S + to))
  local h = redis.call('HMGET', KEYS[4], unpack(ARGV, S + from, S + to))
  for j = from, to do
    stored_cursor[j] = c[j - from + 1] or '0'
    stored_head[j] = h[j - from + 1]
  end
end

-- cursors holds, by stream index, the cursor as the call moves it; false
-- for a stored cursor that does not parse.
local cursors = {}
local function cursor_of(si)
  local c = cursors[si]
  if c == nil then
    c = stored_cursor[si]
    if not valid_seq(c) then c = false end
    cursors[si] = c
  end
  return c
end

local applied, skipped = 0, 0
local changed, heads = {}, {} -- by stream index
-- head_at keeps, per stream, the highest offset applied in a partition:
-- a resume applies events that waited for a missing one out of offset
-- order, and a head's offset says that every record of the stream up to
-- it was processed. floor_p and floor_o are the partition and offset of
-- that floor, false when there is none.
local floor_p, floor_o = {}, {}
local function head_at(si, at)
  local p, o = string.match(at, '^(%d+)/(%d+)$')
  if not p then return at end
  local fp, fo = floor_p[si], floor_o[si]
  if fp == nil then
    fp, fo = false, false
    local h = stored_head[si]
    if h then
      local hp, ho = string.match(h, '^%d+@(%d+)/(%d+) ')
      if hp then fp, fo = hp, ho end
    end
  end
  if fp == p and num_less(o, fo) then
    at = p .. '/' .. fo
  else
    fp, fo = p, o
  end
  floor_p[si], floor_o[si] = fp, fo
  return at
end
-- hset_all writes the values of t, by stream index, into the hash at key
-- under the streams' IDs, in commands of at most CHUNK fields.
local function hset_all(key, t)
  local flat = {}
  for si, v in pairs(t) do
    flat[#flat + 1] = ARGV[S + si]
    flat[#flat + 1] = v
    if #flat == 2 * CHUNK then
      redis.call('HSET', key, unpack(flat))
      flat = {}
    end
  end
  if #flat > 0 then redis.call('HSET', key, unpack(flat)) end
end
local function write_cursors()
  hset_all(KEYS[3], changed)
  hset_all(KEYS[4], heads)
  if applied > 0 then redis.call('HSET', KEYS[1], 'saved', '1') end
end

local pos = S + nstreams + 1
for e = 1, n do
  local si, seq, prev, eid, at, nops = tonumber(ARGV[pos]), ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3], ARGV[pos + 4], tonumber(ARGV[pos + 5])
  local first = pos + 6
  local one = nops == 1 and direct[ARGV[first]] and tonumber(ARGV[first + 1])
  if one then
    pos = first + 2 + one
  else
    pos = first
    for _ = 1, nops do pos = pos + 2 + tonumber(ARGV[pos + 1]) end
  end
  local cur = cursors[si]
  if cur == nil then cur = cursor_of(si) end
  if not cur then
    write_cursors()
    return redis.error_reply('BADCURSOR ' .. e)
  end
  if cur ~= prev and not seq_less(cur, seq) then
    skipped = skipped + 1
  elseif cur ~= prev then
    write_cursors()
    return {'GAP', e - 1, applied, skipped, cur}
  else
    local refused
    if one and one <= CHUNK + 1 then
      -- One command: Redis runs it whole or not at all.
      refused = run_direct(first)
    else
      current = nil
      local ok
      ok, refused = pcall(check_event, first, nops)
      if not ok then refused = refusal('ERR', '', '', 'the checks failed: ' .. tostring(refused)) end
      if refused then
        refused = {'REFUSED', 0, 0, 0, refused.reason, current and current.index or 0,
          current and current.op or '', refused.key, refused.field, refused.code}
      else
        local ran, c, err = run_commands()
        if c then
          local status = 'PARTIAL'
          if ran == 0 then status = 'REFUSED' end -- the failed command was the event's first: nothing of it ran
          if status == 'PARTIAL' then
            -- Park the stream in the same script, so that no later owner
            -- (after a crash before the runner parks it) applies the event
            -- again over its partial writes.
            local stream = ARGV[S + si]
            pcall(function()
              local rec = {stream_id = stream, sequence = tonumber(seq), event_id = eid,
                reason = 'partial-apply', error = 'the store applied part of this event (' .. c.cmd[1] .. ' failed: ' .. tostring(err) ..
                '); replay the projection'}
              local pp, po = string.match(at, '^(%d+)/(%d+)$')
              if pp then rec.position = {partition = tonumber(pp), offset = tonumber(po)} end
              redis.pcall('HSET', KEYS[7], stream, cjson.encode(rec))
            end)
          end
          refused = {status, 0, 0, 0, c.cmd[1] .. ' failed after ' .. ran .. ' of the event\'s ' .. #commands ..
            ' commands ran: ' .. err, c.index, c.op, c.cmd[2], c.field, error_code(err)}
        end
      end
    end
    if refused then
      refused[2], refused[3], refused[4] = e - 1, applied, skipped
      write_cursors()
      return refused
    end
    applied = applied + 1
    cursors[si] = seq
    changed[si] = seq
    if at ~= '' then heads[si] = seq .. '@' .. head_at(si, at) .. ' ' .. eid else heads[si] = seq .. ' ' .. eid end
  end
end
write_cursors()
return {'OK', n, applied, skipped, ''}
`)
