package redischeckpoint

import "github.com/redis/go-redis/v9"

// Every script takes KEYS[1] = meta, KEYS[2] = fences, KEYS[3] = cursors,
// KEYS[4] = event IDs at the cursors of one projection (one hash slot), and starts with ARGV[1..3] = partition,
// epoch, token of the caller's fence; an empty partition means unfenced.
//
// Sequences travel as decimal strings. Lua numbers are doubles, so the
// arithmetic below is exact up to 2^53 events per stream.

// luaPrelude checks the fence and defines helpers. A stale fence answers
// the error "FENCED <current epoch> <current token>".
const luaPrelude = `
local function fence_check()
  if ARGV[1] == '' then return nil end
  local epoch = redis.call('HGET', KEYS[1], 'epoch') or '0'
  local token = redis.call('HGET', KEYS[2], ARGV[1]) or '0'
  if epoch ~= ARGV[2] or token ~= ARGV[3] then
    return redis.error_reply('FENCED ' .. epoch .. ' ' .. token)
  end
  return nil
end
local function valid_seq(s)
  return s == '0' or string.match(s, '^[1-9]%d*$') ~= nil
end
local function seq_less(a, b)
  return #a < #b or (#a == #b and a < b)
end
local fenced = fence_check()
if fenced then return fenced end
`

// advanceScript raises cursors: ARGV[4..] = stream, sequence pairs. It
// answers the number of cursors written, or "BADCURSOR <i>" for the i-th
// stream (1-based) whose stored cursor does not parse.
var advanceScript = redis.NewScript(luaPrelude + `
local n = (#ARGV - 3) / 2
if n < 1 then return 0 end
local ids = {}
for j = 1, n do ids[j] = ARGV[2 + 2 * j] end
local old = redis.call('HMGET', KEYS[3], unpack(ids))
local set = {}
local k = 0
for j = 1, n do
  local cur = old[j]
  local new = ARGV[3 + 2 * j]
  local write = not cur
  if cur then
    local c = tonumber(cur)
    if not c or c < 0 or c % 1 ~= 0 then return redis.error_reply('BADCURSOR ' .. j) end
    write = c < tonumber(new)
  end
  if write then
    set[k + 1] = ids[j]
    set[k + 2] = new
    k = k + 2
  end
end
if #set > 0 then redis.call('HSET', KEYS[3], unpack(set)) end
redis.call('HSET', KEYS[1], 'saved', '1')
return #set / 2
`)

// saveScript replaces the cursors: ARGV[4] = '1' on the first chunk (drop
// the old cursors), ARGV[5..] = stream, sequence pairs.
var saveScript = redis.NewScript(luaPrelude + `
if ARGV[4] == '1' then redis.call('UNLINK', KEYS[3], KEYS[4]) end
if #ARGV > 4 then redis.call('HSET', KEYS[3], unpack(ARGV, 5)) end
redis.call('HSET', KEYS[1], 'saved', '1')
return 1
`)

// deleteScript drops the cursors and the saved mark; epoch and fences stay
// so that tokens keep increasing.
var deleteScript = redis.NewScript(luaPrelude + `
redis.call('UNLINK', KEYS[3], KEYS[4])
redis.call('HDEL', KEYS[1], 'saved')
return 1
`)

// acquireScript answers {epoch, token} with a new token for ARGV[4], the
// partition. It takes no fence (ARGV[1] is empty).
var acquireScript = redis.NewScript(luaPrelude + `
local epoch = redis.call('HGET', KEYS[1], 'epoch') or '0'
local token = redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
return {epoch, tostring(token)}
`)

// bumpScript starts a new epoch and drops the cursors of the old one in the
// same step. It answers the new epoch.
var bumpScript = redis.NewScript(luaPrelude + `
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('UNLINK', KEYS[3], KEYS[4])
return tostring(epoch)
`)

// applyScript applies a batch of events of an AtomicProjection, skipping
// those at or below their stream's cursor. ARGV[4] = number of events, then
// per event: stream, sequence, event ID, number of operations, and per operation: its
// name, its number of arguments, the arguments. It answers
// {status, processed, applied, skipped, detail}: status "OK"; or "GAP" when
// event number processed+1 does not follow its cursor (detail = cursor);
// the cursors of all processed events are written.
var applyScript = redis.NewScript(luaPrelude + `
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
local function op_replace(a)
  -- key field value nsum [sumkey sumfield]... ncount [cntkey cntfield]...
  local old = redis.call('HGET', a[1], a[2])
  redis.call('HSET', a[1], a[2], a[3])
  local delta = tonumber(a[3]) - (tonumber(old) or 0)
  local i = 4
  local nsum = tonumber(a[i]); i = i + 1
  for _ = 1, nsum do
    if delta ~= 0 then redis.call('HINCRBY', a[i], a[i + 1], string.format('%d', delta)) end
    i = i + 2
  end
  local ncount = tonumber(a[i]); i = i + 1
  for _ = 1, ncount do
    if not old then redis.call('HINCRBY', a[i], a[i + 1], 1) end
    i = i + 2
  end
end
local function op_replace_fields(a)
  -- key n field... value... nsum sumkey... ncount countkey...
  local key, n = a[1], tonumber(a[2])
  local fields, vals, hset = {}, {}, {}
  for i = 1, n do
    fields[i], vals[i] = a[2 + i], a[2 + n + i]
    hset[2 * i - 1], hset[2 * i] = fields[i], vals[i]
  end
  local old = redis.call('HMGET', key, unpack(fields))
  redis.call('HSET', key, unpack(hset))
  local p = 3 + 2 * n
  local nsum = tonumber(a[p]); p = p + 1
  for _ = 1, nsum do
    local sk = a[p]; p = p + 1
    local cur = redis.call('HMGET', sk, unpack(fields))
    local out = {}
    for i = 1, n do
      local v = (tonumber(cur[i]) or 0) + tonumber(vals[i]) - (tonumber(old[i]) or 0)
      out[2 * i - 1], out[2 * i] = fields[i], string.format('%d', v)
    end
    redis.call('HSET', sk, unpack(out))
  end
  local ncount = tonumber(a[p]); p = p + 1
  local new = {}
  for i = 1, n do if not old[i] then new[#new + 1] = fields[i] end end
  for _ = 1, ncount do
    local ck = a[p]; p = p + 1
    if #new > 0 then
      local cur = redis.call('HMGET', ck, unpack(new))
      local out = {}
      for j = 1, #new do out[2 * j - 1], out[2 * j] = new[j], string.format('%d', (tonumber(cur[j]) or 0) + 1) end
      redis.call('HSET', ck, unpack(out))
    end
  end
end
local pos = 5
local n = tonumber(ARGV[4])
local applied, skipped = 0, 0
local changed, lastids = {}, {}
for e = 1, n do
  local stream, seq, eid, nops = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2], tonumber(ARGV[pos + 3])
  pos = pos + 4
  local cur = cursor_of(stream)
  if cur == nil then return redis.error_reply('BADCURSOR ' .. e) end
  local apply = false
  if not seq_less(cur, seq) then
    skipped = skipped + 1
  elseif string.format('%d', tonumber(cur) + 1) == seq then
    apply = true
  else
    for s, c in pairs(changed) do redis.call('HSET', KEYS[3], s, c) end
    for s, l in pairs(lastids) do redis.call('HSET', KEYS[4], s, l) end
    return {'GAP', e - 1, applied, skipped, cur}
  end
  for _ = 1, nops do
    local op, nargs = ARGV[pos], tonumber(ARGV[pos + 1])
    local args = {}
    for k = 1, nargs do args[k] = ARGV[pos + 1 + k] end
    pos = pos + 2 + nargs
    if apply then
      if op == 'REPLACE' then op_replace(args)
      elseif op == 'REPLACE_FIELDS' then op_replace_fields(args)
      else redis.call(op, unpack(args)) end
    end
  end
  if apply then
    applied = applied + 1
    cursors[stream] = seq
    changed[stream] = seq
    lastids[stream] = seq .. ' ' .. eid
  end
end
for s, c in pairs(changed) do redis.call('HSET', KEYS[3], s, c) end
for s, l in pairs(lastids) do redis.call('HSET', KEYS[4], s, l) end
if applied > 0 then redis.call('HSET', KEYS[1], 'saved', '1') end
return {'OK', n, applied, skipped, ''}
`)
