package redischeckpoint

// luaPacked adds the writes REPLACE_PACKED (Writes.ReplacePacked) and
// REFUSE_IF_EXISTS (Writes.RefuseIfExists) to the apply script's checks
// (luaChecks): it registers check.REPLACE_PACKED and
// check.REFUSE_IF_EXISTS and uses nothing of the script but luaChecks'
// helpers. REPLACE_PACKED's arguments:
//
//	key segment n value... flags from_sums from_flag_sums from_count_key
//	from_count_field from_first from_slots to_sums to_flag_sums
//	to_count_key to_count_field to_first to_slots width region
//	n_sums [INCRBY i64 #slot value]... n_flags [INCRBY i64 #slot 1]...
//
// flags is a string of n '0' and '1'. Empty key names skip that target.
// region is the segment as stored (flags, then the values) at width, the
// least width its values need: when the string has that width, the
// segment is one SETRANGE of it. The INCRBY lists are what a first
// delivery adds to to's sums and flag sums (slots with a value other than
// 0, in rising order), prepared by the writer.
//
// The packed string (see packedLayout in writes.go): byte 1 is the width
// w of its values in bytes (1..6), bytes 2..32 say which of the 31
// segments are present (1) or not (0); segment s begins at byte
// 33 + s*(13 + 100*w) with 13 bytes of flags (slot q is bit 7-q%8 of byte
// q/8) and then up to 100 values of w bytes (big-endian two's complement).
// A value wider than w rewrites the string at the new width. The sums are
// strings of 8-byte big-endian two's complement integers, slot i at byte
// 8*i; they stay within +-2^53 so that Lua's doubles compute them exactly
// (a sum leaving that range refuses the event, OVERFLOW).
//
// Every read happens in the check, every write is a queued command
// (SETRANGE, SET, HSET of the exact counts), so the event stays whole.
const luaPacked = `
local PACKED_HEADER, PACKED_FLAGS, PACKED_SLOTS, PACKED_SEGMENTS = 32, 13, 100, 31
local SUM_LIMIT = 2^53

local function packed_region(w, s) return PACKED_HEADER + s * (PACKED_FLAGS + PACKED_SLOTS * w) end

-- enc_into appends v (|v| < 2^(8w-1) or, for w = 8, |v| <= 2^53) to the
-- byte table t as w bytes, big-endian two's complement.
local function enc_into(t, v, w)
  local neg = v < 0
  if neg then v = -v - 1 end
  local at = #t
  for i = w, 1, -1 do
    local b = v % 256
    v = (v - b) / 256
    if neg then b = 255 - b end
    t[at + i] = b
  end
end

-- dec reads w bytes of s from pos as a big-endian two's complement integer.
local function dec(s, pos, w)
  local neg = (byte(s, pos) or 0) >= 128
  local v = 0
  for i = pos, pos + w - 1 do
    local b = byte(s, i) or 0
    if neg then b = 255 - b end
    v = v * 256 + b
  end
  if neg then v = -v - 1 end
  return v
end

-- bytes_of returns the bytes of s as a table (in chunks: a fake's Lua
-- has a small stack for many return values).
local function bytes_of(s)
  local t = {}
  for i = 1, #s, 200 do
    local chunk = {byte(s, i, math.min(i + 199, #s))}
    for j = 1, #chunk do t[i + j - 1] = chunk[j] end
  end
  return t
end

local function bytes_string(t)
  local parts = {}
  for i = 1, #t, 200 do parts[#parts + 1] = string.char(unpack(t, i, math.min(i + 199, #t))) end
  return table.concat(parts)
end

local function width_of(v)
  if v < 0 then v = -v - 1 end
  local w = 1
  while v >= 2^(8 * w - 1) do w = w + 1 end
  return w
end

-- REFUSE_IF_EXISTS key code reason: refuses the event when key exists.
check.REFUSE_IF_EXISTS = function(a)
  local r = redis.pcall('EXISTS', a[1])
  if type(r) == 'table' then return failed_read(a[1], '', 'EXISTS', r.err or 'failed') end
  if r == 1 then return refusal(a[2], a[1], '', a[3]) end
end

-- has_bitfield is nil until the first packed write of the script asks:
-- Redis has BITFIELD (its arithmetic and byte packing run in C, several
-- times faster than Lua's); an in-process fake without it gets the same
-- bytes from Lua.
local has_bitfield

-- Without BITFIELD the writes are SETRANGEs of whole bytes, merged with
-- the bytes around them; overlay(key) holds the bytes this event's queued
-- writes leave (zero: every other byte is 0, after a fresh SET), so that
-- a later read or merge of the same event sees them.
local function overlay(key)
  shadow.bytes = shadow.bytes or {}
  local ov = shadow.bytes[key]
  if not ov then
    ov = {zero = false, b = {}}
    shadow.bytes[key] = ov
  end
  return ov
end

-- range_bytes returns bytes lo..hi (from 0) of the string at key as this
-- event left them, zero-padded.
local function range_bytes(key, lo, hi)
  local ov, r = overlay(key), ''
  if not ov.zero then
    r = redis.pcall('GETRANGE', key, lo, hi)
    if type(r) == 'table' then return nil, failed_typed_read(key, 'string', 'GETRANGE', r.err or 'not a string') end
  end
  local t = bytes_of(r)
  for i = 1, hi - lo + 1 do t[i] = ov.b[lo + i - 1] or t[i] or 0 end
  return bytes_string(t)
end

-- packed_get reads slots of the string at key: types[i] ('u8', 'u1',
-- 'i16', 'i64', ...) at bit offsets offs[i]. Absent bytes read as 0.
local function packed_get(key, types, offs)
  local out = {}
  if #types == 0 then return out end
  if has_bitfield then
    for from = 1, #types, 300 do
      local cmd = {'BITFIELD', key}
      for i = from, math.min(from + 299, #types) do
        cmd[#cmd + 1], cmd[#cmd + 2], cmd[#cmd + 3] = 'GET', types[i], offs[i]
      end
      local r = redis.pcall(unpack(cmd))
      if r.err then return nil, failed_typed_read(key, 'string', 'BITFIELD', r.err) end
      for j = 1, #r do out[from + j - 1] = r[j] end
    end
    return out
  end
  local lo, hi = math.huge, 0
  for i = 1, #types do
    local bits = tonumber(sub(types[i], 2))
    lo = math.min(lo, math.floor(offs[i] / 8))
    hi = math.max(hi, math.floor((offs[i] + bits - 1) / 8))
  end
  local r, err = range_bytes(key, lo, hi)
  if err then return nil, err end
  for i = 1, #types do
    local bits, at = tonumber(sub(types[i], 2)), math.floor(offs[i] / 8) - lo + 1
    if bits == 1 then
      out[i] = math.floor((byte(r, at) or 0) / 2^(7 - offs[i] % 8)) % 2
    elseif byte(types[i]) == 117 then -- u8
      out[i] = byte(r, at) or 0
    else
      out[i] = dec(r, at, bits / 8)
    end
  end
  return out
end

-- packed_set queues the writes of slots (types and offsets as for
-- packed_get) to vals: one BITFIELD, or without it a SETRANGE of the
-- bytes from the lowest to the highest slot written, merged into old
-- (the bytes as read, GETRANGE from byte lo; nil when the range reads as
-- zeros).
local function packed_set(key, types, offs, vals)
  if #types == 0 then return end
  if has_bitfield then
    for from = 1, #types, 300 do
      local cmd = {'BITFIELD', key}
      for i = from, math.min(from + 299, #types) do
        cmd[#cmd + 1], cmd[#cmd + 2], cmd[#cmd + 3], cmd[#cmd + 4] = 'SET', types[i], offs[i], format('%d', vals[i])
      end
      local r = emit(cmd)
      if r then return r end
    end
    return
  end
  local lo, hi = math.huge, 0
  for i = 1, #types do
    local bits = tonumber(sub(types[i], 2))
    lo = math.min(lo, math.floor(offs[i] / 8))
    hi = math.max(hi, math.floor((offs[i] + bits - 1) / 8))
  end
  local cur, err = range_bytes(key, lo, hi)
  if err then return err end
  local t = bytes_of(cur)
  for i = 1, #types do
    local bits, at = tonumber(sub(types[i], 2)), math.floor(offs[i] / 8) - lo + 1
    if bits == 1 then
      local mask = 2^(7 - offs[i] % 8)
      local set = math.floor(t[at] / mask) % 2 == 1
      if vals[i] == 1 and not set then t[at] = t[at] + mask elseif vals[i] == 0 and set then t[at] = t[at] - mask end
    else
      local b = {}
      enc_into(b, vals[i], bits / 8)
      for j = 1, #b do t[at + j - 1] = b[j] end
    end
  end
  local ov = overlay(key)
  for i = 1, #t do ov.b[lo + i - 1] = t[i] end
  return emit({'SETRANGE', key, tostring(lo), bytes_string(t)})
end

local function value_off(w, s, q) return 8 * (packed_region(w, s) + PACKED_FLAGS) + 8 * w * q end
local function flag_off(w, s, q) return 8 * packed_region(w, s) + q end

-- packed_fresh queues a SET of the whole packed string at width w, zero
-- but for the header (presence from present, indexed by segment from 0):
-- one allocation of the exact size, which SETRANGE and BITFIELD then
-- write into without growing it.
local function packed_fresh(key, w, present)
  local h = {w}
  for s = 0, PACKED_SEGMENTS - 1 do h[2 + s] = present[s] and 1 or 0 end
  if not has_bitfield then
    local ov = overlay(key)
    ov.zero, ov.b = true, {}
    for i = 1, #h do ov.b[i - 1] = h[i] end
  end
  return emit({'SET', key, string.char(unpack(h)) .. string.rep('\0', packed_region(w, PACKED_SEGMENTS) - PACKED_HEADER)})
end

-- packed_segment_writes adds the slot writes of segment s (vals, flags)
-- at width w to types, offs and vals_out, skipping slots equal to old
-- (nil: zeros).
local function packed_segment_writes(types, offs, out, w, s, vals, flags, old, oldflags)
  local it = 'i' .. (8 * w)
  for q = 1, #vals do
    if vals[q] ~= ((old and old[q]) or 0) then
      types[#types + 1], offs[#offs + 1], out[#out + 1] = it, value_off(w, s, q - 1), vals[q]
    end
    if flags[q] ~= ((oldflags and oldflags[q]) or 0) then
      types[#types + 1], offs[#offs + 1], out[#out + 1] = 'u1', flag_off(w, s, q - 1), flags[q]
    end
  end
end

check.REPLACE_PACKED = function(a)
  local key, seg, n = a[1], tonumber(a[2]), tonumber(a[3])
  local p = 5 + n
  local from = {sums = a[p], flags = a[p + 1], ckey = a[p + 2], cfield = a[p + 3], first = tonumber(a[p + 4]), total = tonumber(a[p + 5])}
  local to = {sums = a[p + 6], flags = a[p + 7], ckey = a[p + 8], cfield = a[p + 9], first = tonumber(a[p + 10]), total = tonumber(a[p + 11])}
  local region_w, region = tonumber(a[p + 12]), a[p + 13]
  if not region_w or region_w < 1 or region_w > 6 or #region ~= PACKED_FLAGS + n * region_w then
    return refusal('INVALID', key, '', 'the packed segment does not match its values')
  end
  -- The values one by one: only where the segment is not one SETRANGE of
  -- the writer's bytes (a correction, a move, a width change). need is
  -- region_w, the least width the values need (checked here).
  local new, newflags, need
  local function parse_values()
    new, newflags, need = {}, {}, 1
    for i = 1, n do
      new[i] = tonumber(a[3 + i])
      need = math.max(need, width_of(new[i]))
    end
    local fs = a[4 + n]
    for i = 1, n do newflags[i] = byte(fs, i) - 48 end
    if need ~= region_w then return refusal('INVALID', key, '', 'the packed segment does not match its values') end
  end
  if shadow.types[key] then return refusal('INVALID', key, '', 'the packed key is written twice in one event') end

  local head
  if has_bitfield == nil then
    head = redis.pcall('BITFIELD', key, 'GET', 'u8', '0', 'GET', 'u8', tostring(8 * (1 + seg)))
    has_bitfield = not (head.err and find(string.lower(head.err), 'unknown', 1, true) ~= nil and find(string.lower(head.err), 'command', 1, true) ~= nil)
    if not has_bitfield then head = nil end
  end
  if not head then
    local err
    head, err = packed_get(key, {'u8', 'u8'}, {0, 8 * (1 + seg)})
    if err then return err end
  elseif head.err then
    return failed_typed_read(key, 'string', 'BITFIELD', head.err)
  end
  shadow.types[key] = 'string'
  local w, present = head[1], head[2] == 1
  if w > 6 then return refusal('NOTINT', key, '', 'not a packed string: width ' .. w) end
  local old, oldflags
  if present then
    local types, offs = {}, {}
    for q = 0, n - 1 do
      types[#types + 1], offs[#offs + 1] = 'i' .. (8 * w), value_off(w, seg, q)
      types[#types + 1], offs[#offs + 1] = 'u1', flag_off(w, seg, q)
    end
    local r, err = packed_get(key, types, offs)
    if err then return err end
    old, oldflags = {}, {}
    for q = 1, n do old[q], oldflags[q] = r[2 * q - 1], r[2 * q] end
  end

  -- The stored segment.
  local nw = math.max(w, region_w)
  local types, offs, out = {}, {}, {}
  if w == 0 or nw ~= w or (w ~= region_w) then
    local bad = parse_values()
    if bad then return bad end
  end
  if w == 0 or nw ~= w then
    -- A new string, or one rewritten at a wider width: every present
    -- segment is read at the old width and written at the new one.
    local presence = {[seg] = true}
    local segs = {}
    if w ~= 0 then
      local pt, po = {}, {}
      for s = 0, PACKED_SEGMENTS - 1 do pt[#pt + 1], po[#po + 1] = 'u8', 8 * (1 + s) end
      local pr, err = packed_get(key, pt, po)
      if err then return err end
      for s = 0, PACKED_SEGMENTS - 1 do
        if pr[s + 1] == 1 and s ~= seg then
          presence[s] = true
          local st, so = {}, {}
          for q = 0, PACKED_SLOTS - 1 do
            st[#st + 1], so[#so + 1] = 'i' .. (8 * w), value_off(w, s, q)
            st[#st + 1], so[#so + 1] = 'u1', flag_off(w, s, q)
          end
          local r, err2 = packed_get(key, st, so)
          if err2 then return err2 end
          local v, f = {}, {}
          for q = 1, PACKED_SLOTS do v[q], f[q] = r[2 * q - 1], r[2 * q] end
          segs[#segs + 1] = {s, v, f}
        end
      end
    end
    local r = packed_fresh(key, nw, presence)
    if r then return r end
    for _, sv in ipairs(segs) do packed_segment_writes(types, offs, out, nw, sv[1], sv[2], sv[3]) end
    packed_segment_writes(types, offs, out, nw, seg, new, newflags)
  elseif w == region_w then
    -- The writer packed the segment at the stored width: one SETRANGE.
    local r = emit({'SETRANGE', key, tostring(packed_region(w, seg)), region})
    if r then return r end
    if not has_bitfield then
      local ov = overlay(key)
      for i = 1, #region do ov.b[packed_region(w, seg) + i - 1] = byte(region, i) end
    end
    if not present then types[1], offs[1], out[1] = 'u8', 8 * (1 + seg), 1 end
  else
    packed_segment_writes(types, offs, out, w, seg, new, newflags, old, oldflags)
    if not present then types[#types + 1], offs[#offs + 1], out[#out + 1] = 'u8', 8 * (1 + seg), 1 end
  end
  local r = packed_set(key, types, offs, out)
  if r then return r end

  -- A first delivery with BITFIELD: the new values and flags go to to's
  -- sums as they are, with the INCRBY subcommands the writer prepared
  -- (building them here costs several times more than Redis running
  -- them). The sums are checked to lie within +-2^52 by their top bytes:
  -- a value adds at most 2^47, so INCRBY cannot leave int64.
  shadow.sums = shadow.sums or {}
  if has_bitfield and not present then
    local q = p + 14
    local lists = {}
    for _, k in ipairs({to.sums, to.flags}) do
      local cnt = tonumber(a[q])
      lists[#lists + 1] = {k, q + 1, q + 4 * cnt}
      q = q + 1 + 4 * cnt
    end
    for _, l in ipairs(lists) do
      local k, i, j = l[1], l[2], l[3]
      if k ~= '' and j >= i then
        local t = shadow.types[k]
        if t and t ~= 'none' and t ~= 'string' then return wrong_type(k, t, 'string') end
        if shadow.sums[k] then return refusal('INVALID', k, '', 'two packed writes of one event add to the same sums') end
        shadow.sums[k] = 'fast'
        local lo, hi = tonumber(sub(a[i + 2], 2)), tonumber(sub(a[j - 1], 2))
        local cur = redis.pcall('GETRANGE', k, 8 * lo, 8 * hi + 7)
        if type(cur) == 'table' then return failed_typed_read(k, 'string', 'GETRANGE', cur.err or 'not a string') end
        shadow.types[k] = 'string'
        if #cur < 8 * (hi - lo + 1) then
          local len = redis.pcall('STRLEN', k)
          if type(len) == 'table' then return failed_read(k, '', 'STRLEN', len.err or 'failed') end
          if len < 8 * to.total then
            r = emit({'SETRANGE', k, tostring(8 * to.total - 1), '\0'})
            if r then return r end
          end
        end
        for x = i + 2, j, 4 do
          local at = 8 * (tonumber(sub(a[x], 2)) - lo) + 1
          local b1, b2 = byte(cur, at, at + 1)
          if b1 and not ((b1 == 0 and b2 < 16) or (b1 == 255 and b2 >= 240)) then
            return refusal('OVERFLOW', k, sub(a[x], 2), 'the sum of slot ' .. sub(a[x], 2) .. ' lies outside +-2^52')
          end
        end
        local cmd = {'BITFIELD', k}
        for x = i, j do cmd[#cmd + 1] = a[x] end
        r = emit(cmd)
        if r then return r end
      end
    end
    if to.ckey ~= '' then
      r = add_to_field(to.ckey, to.cfield, '1')
      if r then return r end
    end
    return
  end

  if not new then
    local bad = parse_values()
    if bad then return bad end
  end
  -- The aggregates: what the old segment added to from goes, what the new
  -- one adds goes to to.
  local order, deltas, totals = {}, {}, {}
  local function delta(k, total, slot, d)
    if k == '' or d == 0 then return end
    local m = deltas[k]
    if not m then
      m = {}
      deltas[k], totals[k] = m, total
      order[#order + 1] = k
    end
    m[slot] = (m[slot] or 0) + d
  end
  for i = 1, n do
    if present then
      delta(from.sums, from.total, from.first + i - 1, -old[i])
      delta(from.flags, from.total, from.first + i - 1, -oldflags[i])
    end
    delta(to.sums, to.total, to.first + i - 1, new[i])
    delta(to.flags, to.total, to.first + i - 1, newflags[i])
  end
  for _, k in ipairs(order) do
    local t = shadow.types[k]
    if t and t ~= 'none' and t ~= 'string' then return wrong_type(k, t, 'string') end
    local cache = shadow.sums[k]
    if cache == 'fast' then return refusal('INVALID', k, '', 'two packed writes of one event add to the same sums') end
    local fresh = false
    if not cache then
      cache = {}
      shadow.sums[k] = cache
      -- Give a new series its whole length at once: a string grown by
      -- writes at rising offsets takes up to twice its length.
      local len = redis.pcall('STRLEN', k)
      if type(len) == 'table' then return failed_typed_read(k, 'string', 'STRLEN', len.err or 'failed') end
      fresh = len < 8 * totals[k]
    end
    shadow.types[k] = 'string'
    local st, so, slots = {}, {}, {}
    for slot, d in pairs(deltas[k]) do
      if d ~= 0 then
        slots[#slots + 1] = slot
      end
    end
    table.sort(slots)
    local missing, mo = {}, {}
    for _, slot in ipairs(slots) do
      if cache[slot] == nil then missing[#missing + 1], mo[#mo + 1] = 'i64', 64 * slot end
    end
    local got, err = packed_get(k, missing, mo)
    if err then return err end
    local j = 0
    for _, slot in ipairs(slots) do
      local cur = cache[slot]
      if cur == nil then
        j = j + 1
        cur = got[j]
      end
      if cur > SUM_LIMIT or cur < -SUM_LIMIT then
        return refusal('NOTINT', k, tostring(slot), 'the sum of slot ' .. slot .. ' is not a packed integer within +-2^53')
      end
      local sum = cur + deltas[k][slot]
      if sum > SUM_LIMIT or sum < -SUM_LIMIT then
        return refusal('OVERFLOW', k, tostring(slot), 'the sum of slot ' .. slot .. ' would leave +-2^53')
      end
      cache[slot] = sum
      st[#st + 1], so[#so + 1] = 'i64', 64 * slot
    end
    if fresh then
      r = emit({'SETRANGE', k, tostring(8 * totals[k] - 1), '\0'})
      if r then return r end
    end
    local vals = {}
    for i, slot in ipairs(slots) do vals[i] = cache[slot] end
    if #slots > 0 then
      r = packed_set(k, st, so, vals)
      if r then return r end
    end
  end

  -- The counts: the segment leaves from's count when it was present and
  -- joins to's.
  local counts = {}
  if present and from.ckey ~= '' then counts[#counts + 1] = {from.ckey, from.cfield, -1} end
  if to.ckey ~= '' then
    if #counts == 1 and counts[1][1] == to.ckey and counts[1][2] == to.cfield then
      counts = {}
    else
      counts[#counts + 1] = {to.ckey, to.cfield, 1}
    end
  end
  for _, c in ipairs(counts) do
    r = add_to_field(c[1], c[2], tostring(c[3]))
    if r then return r end
  end
end
`
