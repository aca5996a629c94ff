package redischeckpoint

// luaChecks is the heart of the apply script: check_event checks every
// write of one event before any of them runs, and turns them into the
// Redis commands that run them.
//
// Redis does not roll a script back: a command that fails half way leaves
// the writes before it. So the checks establish, for each write, what
// would make Redis refuse its commands, against the state as it is after
// the batch's earlier events and the event's earlier writes:
//
//   - the key's type (hash writes need none or hash, SADD and SREM none or
//     set, INCRBY none or string; SET and DEL take any),
//   - the integers HINCRBY, INCRBY, Replace and ReplaceFields add to
//     (string2ll's rules, see is_int), and that the results fit int64,
//   - that the ACL user may run each command on its key
//     (redis.acl_check_cmd, Redis 7.0+; the in-process miniredis has no
//     ACL and no such function).
//
// The shadow holds what the event's earlier writes left, per key: its
// type, the hash fields and the string value the checks needed, read from
// Redis on first use: HMGET and GET where the check needs values (their
// WRONGTYPE tells the type), TYPE for the other writes. Reads run with
// redis.pcall: a read that fails (an ACL user without TYPE, say) refuses
// the event like a failed check. Writes of one event use each key as one type between
// DELs and SETs of it (Writes refuses others before sending), so the
// shadow need not know when HDEL or SREM empty a key.
//
// Each write becomes commands of at most CHUNK values (a Lua unpack fails
// near 8000). Replace and ReplaceFields write sums and counts as HSETs of
// the exact results the checks computed.
//
// A refusal is {code, key, field, reason}; check_event leaves the
// commands in commands and the write being checked in current.
const luaChecks = `
local CHUNK = 1000
local acl = redis.acl_check_cmd
local permitted_cache = {}
local shadow, commands, current

local function refusal(code, key, field, reason)
  return {code = code, key = key or '', field = field or '', reason = reason}
end

-- error_code is the code of a Redis error reply; an ACL refusal inside a
-- script reads "ERR The user executing the script can't ..." on 7.0.
local function error_code(err)
  if find(err, "user executing the script can't", 1, true) then return 'NOPERM' end
  return string.match(err, '^(%u+)') or 'ERR'
end

local function failed_read(key, field, command, err)
  return refusal(error_code(err), key, field, command .. ' failed: ' .. err)
end

local function quote(v)
  if #v > 40 then v = sub(v, 1, 40) .. '...' end
  return format('%q', v)
end

local function hash_of(key)
  local h = shadow.hashes[key]
  if not h then
    h = {cleared = false, vals = {}}
    shadow.hashes[key] = h
  end
  return h
end

-- forget_key records that key is absent (DEL) or a string (SET).
local function forget_key(key, typ, value)
  shadow.types[key] = typ
  shadow.hashes[key] = {cleared = true, vals = {}}
  shadow.strings[key] = value
end

local function wrong_type(key, t, want)
  return refusal('WRONGTYPE', key, '', 'the key holds a ' .. t .. ', the write needs a ' .. want)
end

-- need_type refuses unless key is absent or of type want: 'hash', 'set'
-- or 'string'.
local function need_type(key, want)
  local t = shadow.types[key]
  if not t then
    local r = redis.pcall('TYPE', key)
    if r.err then return failed_read(key, '', 'TYPE', r.err) end
    t = r.ok
    if t == 'none' then forget_key(key, t, false) end
  end
  if t ~= 'none' and t ~= want then return wrong_type(key, t, want) end
  shadow.types[key] = want
end

-- failed_typed_read refuses after a read of key as a want failed with err:
-- a WRONGTYPE names the type the key holds.
local function failed_typed_read(key, want, command, err)
  if find(err, '^WRONGTYPE') then
    local r = need_type(key, want)
    if r then return r end
  end
  return failed_read(key, '', command, err)
end

-- hash_values returns the values of the hash at key by field (nil or
-- false when absent) with those of fields read, or a refusal unless key
-- is absent or a hash. The table is the shadow's: read before writing.
local function hash_values(key, fields)
  local t, h = shadow.types[key], hash_of(key)
  if t and t ~= 'none' and t ~= 'hash' then return nil, wrong_type(key, t, 'hash') end
  if not h.cleared then
    local missing, vals = fields, h.vals
    if next(vals) then
      missing = {}
      for i = 1, #fields do
        if vals[fields[i]] == nil then missing[#missing + 1] = fields[i] end
      end
    end
    if not t and #missing == 0 then
      local r = need_type(key, 'hash')
      if r then return nil, r end
    end
    for from = 1, #missing, CHUNK do
      local to = math.min(from + CHUNK - 1, #missing)
      local r = redis.pcall('HMGET', key, unpack(missing, from, to))
      if r.err then return nil, failed_typed_read(key, 'hash', 'HMGET', r.err) end
      for j = from, to do vals[missing[j]] = r[j - from + 1] end
    end
  end
  shadow.types[key] = 'hash'
  return h.vals
end

-- integer returns the integer v holds, '0' when absent, or a refusal.
local function integer(v, key, field)
  if not v then return '0' end
  if is_int(v) then return v end
  return nil, refusal('NOTINT', key, field, 'it holds ' .. quote(v) .. ', not an integer')
end

-- fits returns sum, or a refusal when it is outside int64: a + b (- c).
-- The message is made only then: it would cost more than the sum.
local function fits(sum, key, field, a, b, c)
  if fits_int64(sum) then return sum end
  local expression = a .. ' + ' .. b
  if c then expression = expression .. ' - ' .. c end
  return nil, refusal('OVERFLOW', key, field, expression .. ' = ' .. sum .. ' is outside int64')
end

-- permitted asks the ACL once per command and key. Of the arguments it
-- passes the first two after the key at most: the ACL decides on the
-- command, its key (our commands have one, the first) and at most its
-- first argument (a "+command|arg" rule), and converting a chunk of
-- values for each new key costs as much as running the command.
local function permitted(cmd)
  if not acl then return true end
  local by_key = permitted_cache[cmd[1]]
  if not by_key then
    by_key = {}
    permitted_cache[cmd[1]] = by_key
  end
  local ok = by_key[cmd[2]]
  if ok == nil then
    ok = acl(unpack(cmd, 1, math.min(#cmd, 4)))
    by_key[cmd[2]] = ok
  end
  return ok
end

-- emit queues a command of the current write; field names it in errors.
local function emit(cmd, field)
  if not permitted(cmd) then
    return refusal('NOPERM', cmd[2], '', 'the ACL user may not run ' .. cmd[1] .. ' on the key')
  end
  commands[#commands + 1] = {cmd = cmd, index = current.index, op = current.op, field = field or ''}
end

-- emit_chunks queues name key values[from..to] as commands of at most
-- CHUNK values (an even number: field, value pairs stay together).
local function emit_chunks(name, key, values, from, to)
  for i = from, to, CHUNK do
    local r = emit({name, key, unpack(values, i, math.min(i + CHUNK - 1, to))})
    if r then return r end
  end
end

-- add_checked checks that field of the hash at key holds an integer and
-- that adding delta to it fits int64, records the sum in the shadow and
-- returns it (or nil and the refusal).
local function add_checked(key, field, delta)
  local vals, err = hash_values(key, {field})
  if err then return nil, err end
  local cur, bad = integer(vals[field], key, field)
  if bad then return nil, bad end
  local sum, over = fits(add(cur, delta), key, field, cur, delta)
  if over then return nil, over end
  vals[field] = sum
  return sum
end

-- add_to_field checks and queues field of the hash at key += delta (an
-- exact decimal, possibly outside int64) as an HSET of the result.
local function add_to_field(key, field, delta)
  local sum, refused = add_checked(key, field, delta)
  if refused then return refused end
  return emit({'HSET', key, field, sum}, field)
end

local check = {}

check.HSET = function(a) -- key field value
  local r = need_type(a[1], 'hash')
  if r then return r end
  hash_of(a[1]).vals[a[2]] = a[3]
  return emit({'HSET', a[1], a[2], a[3]}, a[2])
end

check.HDEL = function(a) -- key field...
  local r = need_type(a[1], 'hash')
  if r then return r end
  local h = hash_of(a[1])
  for i = 2, #a do h.vals[a[i]] = false end
  return emit_chunks('HDEL', a[1], a, 2, #a)
end

check.HINCRBY = function(a) -- key field n
  local _, refused = add_checked(a[1], a[2], a[3])
  if refused then return refused end
  return emit({'HINCRBY', a[1], a[2], a[3]}, a[2])
end

check.SET = function(a) -- key value
  forget_key(a[1], 'string', a[2])
  return emit({'SET', a[1], a[2]})
end

check.DEL = function(a) -- key
  forget_key(a[1], 'none', false)
  return emit({'DEL', a[1]})
end

check.INCRBY = function(a) -- key n
  local key, n = a[1], a[2]
  local t = shadow.types[key]
  if t and t ~= 'none' and t ~= 'string' then return wrong_type(key, t, 'string') end
  local v = shadow.strings[key]
  if v == nil then
    v = redis.pcall('GET', key)
    if type(v) == 'table' then return failed_typed_read(key, 'string', 'GET', v.err or 'not a string') end
    shadow.strings[key] = v
  end
  shadow.types[key] = 'string'
  local cur, bad = integer(v, key, '')
  if bad then return bad end
  local sum, over = fits(add(cur, n), key, '', cur, n)
  if over then return over end
  shadow.strings[key] = sum
  return emit({'INCRBY', key, n})
end

check.SADD = function(a) -- key member...
  local r = need_type(a[1], 'set')
  if r then return r end
  return emit_chunks('SADD', a[1], a, 2, #a)
end

check.SREM = function(a) -- key member...
  local r = need_type(a[1], 'set')
  if r then return r end
  return emit_chunks('SREM', a[1], a, 2, #a)
end

check.REPLACE = function(a) -- key field value nsum [sumkey sumfield]... ncount [cntkey cntfield]...
  local key, field, value = a[1], a[2], a[3]
  local vals, err = hash_values(key, {field})
  if err then return err end
  local old = vals[field]
  vals[field] = value
  local r = emit({'HSET', key, field, value}, field)
  if r then return r end
  local i = 4
  local nsum = tonumber(a[i])
  if nsum > 0 then
    -- The old value matters only to the sums: refuse it only then.
    local cur, bad = integer(old, key, field)
    if bad then return bad end
    local delta = add(value, negate(cur))
    for s = 1, nsum do
      if delta ~= '0' then
        r = add_to_field(a[i + 2 * s - 1], a[i + 2 * s], delta)
        if r then return r end
      end
    end
  end
  i = i + 2 * nsum + 1
  local ncount = tonumber(a[i])
  if not old then
    for c = 1, ncount do
      r = add_to_field(a[i + 2 * c - 1], a[i + 2 * c], '1')
      if r then return r end
    end
  end
end

check.REPLACE_FIELDS = function(a) -- key n field... value... nsum sumkey... ncount countkey...
  local key, n = a[1], tonumber(a[2])
  local fields, vals, hset = {}, {}, {}
  for i = 1, n do
    fields[i], vals[i] = a[2 + i], a[2 + n + i]
    hset[2 * i - 1], hset[2 * i] = fields[i], vals[i]
  end
  local hv, err = hash_values(key, fields)
  if err then return err end
  local old = {}
  for i = 1, n do
    old[i] = hv[fields[i]] or false
    hv[fields[i]] = vals[i]
  end
  local r = emit_chunks('HSET', key, hset, 1, 2 * n)
  if r then return r end
  local p = 3 + 2 * n
  local nsum = tonumber(a[p])
  for i = 1, n do
    -- The old values matter only to the sums: refuse them only then.
    if nsum > 0 and old[i] and not is_int(old[i]) then
      return refusal('NOTINT', key, fields[i], 'it holds ' .. quote(old[i]) .. ', not an integer')
    end
  end
  for s = 1, nsum do
    local sk = a[p + s]
    local cur, err = hash_values(sk, fields)
    if err then return err end
    local out = {}
    for i = 1, n do
      local f = fields[i]
      local c, bad = integer(cur[f], sk, f)
      if bad then return bad end
      local o = old[i] or '0'
      local sum, over = fits(add_sub(c, vals[i], o), sk, f, c, vals[i], o)
      if over then return over end
      out[2 * i - 1], out[2 * i] = f, sum
      cur[f] = sum
    end
    r = emit_chunks('HSET', sk, out, 1, 2 * n)
    if r then return r end
  end
  p = p + nsum + 1
  local new = {}
  for i = 1, n do
    if not old[i] then new[#new + 1] = fields[i] end
  end
  if #new == 0 then return end
  for c = 1, tonumber(a[p]) do
    local ck = a[p + c]
    local cur, err = hash_values(ck, new)
    if err then return err end
    local out = {}
    for j = 1, #new do
      local f = new[j]
      local v, bad = integer(cur[f], ck, f)
      if bad then return bad end
      local sum, over = fits(add(v, '1'), ck, f, v, '1')
      if over then return over end
      out[2 * j - 1], out[2 * j] = f, sum
      cur[f] = sum
    end
    r = emit_chunks('HSET', ck, out, 1, 2 * #new)
    if r then return r end
  end
end

-- check_event checks the nops writes of an event whose first write is at
-- ARGV[pos], and leaves their commands in commands; it returns a refusal
-- or nil.
local function check_event(pos, nops)
  shadow, commands = {types = {}, hashes = {}, strings = {}}, {}
  for i = 1, nops do
    local op, nargs = ARGV[pos], tonumber(ARGV[pos + 1])
    local a = {}
    for k = 1, nargs do a[k] = ARGV[pos + 1 + k] end
    pos = pos + 2 + nargs
    current = {index = i, op = op}
    local f = check[op]
    if not f then return refusal('INVALID', a[1], '', 'unknown write') end
    local r = f(a)
    if r then return r end
  end
end

-- run_commands runs the checked commands; on a failure it returns how
-- many ran before and the failed command and error.
local function run_commands()
  for i = 1, #commands do
    local c = commands[i]
    local r = redis.pcall(unpack(c.cmd))
    if type(r) == 'table' and r.err then return i - 1, c, r.err end
  end
end

-- direct lists the writes that are one command of the write's own
-- arguments (when they change at most CHUNK values). Redis runs one command
-- whole or not at all, so an event of one such write needs none of the
-- checks: run_direct runs it, and a failure (a wrong type, a value that is
-- not an integer, an overflow, the ACL, no memory) writes nothing.
local direct = {HSET = true, HINCRBY = true, SET = true, INCRBY = true, DEL = true, HDEL = true, SADD = true, SREM = true}

-- run_direct runs the write at ARGV[pos] as its command; on a failure it
-- returns the refusal reply of the apply script (its counts filled in by
-- the caller).
local function run_direct(pos)
  local op, nargs = ARGV[pos], tonumber(ARGV[pos + 1])
  local r = redis.pcall(op, unpack(ARGV, pos + 2, pos + 1 + nargs))
  if type(r) ~= 'table' or not r.err then return nil end
  local err, code, field = r.err, error_code(r.err), ''
  if find(err, 'not an integer', 1, true) then
    code = 'NOTINT'
  elseif find(err, 'overflow', 1, true) then
    code = 'OVERFLOW'
  end
  if (code == 'NOTINT' or code == 'OVERFLOW') and op == 'HINCRBY' then field = ARGV[pos + 3] end
  return {'REFUSED', 0, 0, 0, op .. ' failed: ' .. err, 1, op, ARGV[pos + 2], field, code}
end
`
