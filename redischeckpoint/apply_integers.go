package redischeckpoint

// luaIntegers is the integer arithmetic of the apply script's checks.
// Integers travel as decimal strings. Lua numbers are doubles, exact only
// up to 2^53, so a sum goes through doubles only when every term has at
// most 15 characters (|x| < 10^15: three of them add up below 2^53), and
// digit by digit otherwise, exact at any length; is_int then tells
// whether the result fits int64.
const luaIntegers = `
local INT64_MAX, INT64_MIN_MAGNITUDE = '9223372036854775807', '9223372036854775808'
local byte, sub, find, format = string.byte, string.sub, string.find, string.format

-- int_string prints an integral number below 2^53 exactly. Redis's C Lua
-- prints numbers with '%.14g' in tostring, so it needs format('%d');
-- miniredis's gopher-lua prints integral numbers exactly in tostring,
-- where it costs a fraction of its format.
local exact_tostring = tostring(2^53 + 2) == '9007199254740994'
local int_string = tostring
if not exact_tostring then int_string = function(x) return format('%d', x) end end

-- is_int reports whether s is an integer as Redis parses one (string2ll,
-- used by HINCRBY and INCRBY): an optional '-', no '+', no spaces, no
-- leading zeros, '0' alone ('-0' is not one), within int64. It runs for
-- every stored value a sum reads, so it has two exact implementations:
-- an anchored pattern, cheapest in Redis's C Lua, and a print-back test,
-- cheapest where int_string is a tostring (gopher-lua compiles a pattern
-- at every call).
local function is_int_pattern(s)
  if not find(s, '^%-?[1-9]%d*$') then return s == '0' end
  if #s <= 18 then return true end -- at most 18 digits
  local magnitude, limit = s, INT64_MAX
  if byte(s, 1) == 45 then magnitude, limit = sub(s, 2), INT64_MIN_MAGNITUDE end
  return #magnitude < 19 or (#magnitude == 19 and magnitude <= limit)
end

local function is_int_printed(s)
  if #s > 15 then return is_int_pattern(s) end
  -- A whole number that prints back as s: tonumber also takes ' 1',
  -- '+1', '01', '1e3' and '0x1', which print otherwise, and '-0', which
  -- prints as '0'; x % 1 rules out fractions, inf and nan.
  local x = tonumber(s)
  return x ~= nil and x % 1 == 0 and int_string(x) == s
end

local is_int = is_int_pattern
if exact_tostring then is_int = is_int_printed end

-- fits_int64 reports whether sum, a decimal made by add or add_sub (so
-- without leading zeros), is within int64: any of at most 18 characters is.
local function fits_int64(sum)
  return #sum <= 18 or is_int(sum)
end

-- digits_string turns digits, least significant first, into a string
-- (characters: miniredis's table.concat returns a lone number as is).
local function digits_string(t)
  local out = {}
  for i = #t, 1, -1 do out[#out + 1] = string.char(48 + t[i]) end
  return table.concat(out)
end

-- magnitude_add returns a + b for magnitudes (digit strings).
local function magnitude_add(a, b)
  local t, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry
    if i > 0 then d = d + byte(a, i) - 48 end
    if j > 0 then d = d + byte(b, j) - 48 end
    carry = 0
    if d >= 10 then d, carry = d - 10, 1 end
    t[#t + 1] = d
    i, j = i - 1, j - 1
  end
  return digits_string(t)
end

-- magnitude_sub returns a - b for magnitudes a > b.
local function magnitude_sub(a, b)
  local t, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = byte(a, i) - 48 - borrow
    if j > 0 then d = d - (byte(b, j) - 48) end
    borrow = 0
    if d < 0 then d, borrow = d + 10, 1 end
    t[#t + 1] = d
    i, j = i - 1, j - 1
  end
  while #t > 1 and t[#t] == 0 do t[#t] = nil end
  return digits_string(t)
end

local function negate(s)
  if s == '0' then return s end
  if byte(s, 1) == 45 then return sub(s, 2) end
  return '-' .. s
end

-- add returns a + b exactly, for decimal integers of any length.
local function add(a, b)
  if #a <= 15 and #b <= 15 then return int_string(tonumber(a) + tonumber(b)) end
  local a_negative, b_negative = byte(a, 1) == 45, byte(b, 1) == 45
  local am, bm = a, b
  if a_negative then am = sub(a, 2) end
  if b_negative then bm = sub(b, 2) end
  local m, negative
  if a_negative == b_negative then
    m, negative = magnitude_add(am, bm), a_negative
  elseif am == bm then
    return '0'
  elseif num_less(am, bm) then
    m, negative = magnitude_sub(bm, am), b_negative
  else
    m, negative = magnitude_sub(am, bm), a_negative
  end
  if negative then return '-' .. m end
  return m
end

-- add_sub returns a + b - c exactly.
local function add_sub(a, b, c)
  if #a <= 15 and #b <= 15 and #c <= 15 then
    return int_string(tonumber(a) + tonumber(b) - tonumber(c))
  end
  return add(add(a, b), negate(c))
end
`
