package redischeckpoint

import "github.com/redis/go-redis/v9"

// applyScript applies a batch of events of an AtomicProjection, skipping
// those at or below their stream's cursor. ARGV[A+1] = number of events,
// then per event: stream, sequence, event ID, position ("<partition>/<offset>"
// or ""), number of operations, and per operation: its name, its number of
// arguments, the arguments. It answers {status, processed, applied, skipped,
// detail}: status "OK"; or "GAP" when event number processed+1 does not
// follow its cursor (detail = cursor); the cursors and heads of all
// processed events are written.
var applyScript = redis.NewScript(guarded + `
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
local pos = A + 2
local n = tonumber(ARGV[A + 1])
local applied, skipped = 0, 0
local changed, heads = {}, {}
local function write_cursors()
  for s, c in pairs(changed) do redis.call('HSET', KEYS[3], s, c) end
  for s, h in pairs(heads) do redis.call('HSET', KEYS[4], s, h) end
  if applied > 0 then redis.call('HSET', KEYS[1], 'saved', '1') end
end
for e = 1, n do
  local stream, seq, eid, at, nops = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3], tonumber(ARGV[pos + 4])
  pos = pos + 5
  local cur = cursor_of(stream)
  if cur == nil then
    write_cursors()
    return redis.error_reply('BADCURSOR ' .. e)
  end
  local apply = false
  if not seq_less(cur, seq) then
    skipped = skipped + 1
  elseif string.format('%d', tonumber(cur) + 1) == seq then
    apply = true
  else
    write_cursors()
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
    if at ~= '' then heads[stream] = seq .. '@' .. at .. ' ' .. eid else heads[stream] = seq .. ' ' .. eid end
  end
end
write_cursors()
return {'OK', n, applied, skipped, ''}
`)
