-- Shared by the scripts that read or write batches: a batch's state, packed, as one field
-- of its campaign's batches hash (`bt`; processors/domain/batchstate.py unpacks it too):
--   status code|version|total|created_us base 36|known|counts|retries
-- counts: per contact status its letter and count, run together (`c12f3`); retries:
-- `retry count:contacts` joined by commas. An absent field is empty; zero counts are left
-- out. Unpacked, a state is a table by the field names a hash per batch had (`s`, `v`,
-- `total`, `created_us` as strings; `known`, `contacts:<status>`, `retry:<n>` as numbers).
local CONTACT_FIELD = {}
for code, name in pairs(CONTACT) do CONTACT_FIELD[code] = 'contacts:' .. name end
local BATCH_CODE = {}
for code, name in pairs(BATCH) do BATCH_CODE[name] = code end

local DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'
local function base36(n)
  if n == 0 then return '0' end
  local out = ''
  while n > 0 do
    local r = n % 36
    out = string.sub(DIGITS, r + 1, r + 1) .. out
    n = (n - r) / 36
  end
  return out
end

local function integer(n)
  return string.format('%d', n)
end

local PACKED_BATCH = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$'
local function unpack_batch(packed)
  local s, v, total, created, known, counts, retries = string.match(packed, PACKED_BATCH)
  if not s then error('not a packed batch state: ' .. packed) end
  local t = {}
  if s ~= '' then t.s = BATCH[s] end
  if v ~= '' then t.v = v end
  if total ~= '' then t.total = total end
  if created ~= '' then
    local negative, digits = string.match(created, '^(%-?)(%w+)$')
    local us = tonumber(digits, 36)
    t.created_us = integer(negative == '-' and -us or us)
  end
  if known ~= '' then t.known = tonumber(known) end
  for code, n in string.gmatch(counts, '(%a)(%-?%d+)') do t[CONTACT_FIELD[code]] = tonumber(n) end
  for r, n in string.gmatch(retries, '(%d+):(%-?%d+)') do t['retry:' .. r] = tonumber(n) end
  return t
end

local function pack_batch(t)
  local counts, retries, order = {}, {}, {}
  for _, code in ipairs(CONTACT_ORDER) do
    local n = t[CONTACT_FIELD[code]]
    if n and n ~= 0 then counts[#counts + 1] = code .. integer(n) end
  end
  -- retry counts sorted by value, written as they were named (a double of 10^14 or more
  -- would print in exponent form)
  for field, n in pairs(t) do
    local r = string.match(field, '^retry:(%d+)$')
    if r and n ~= 0 then order[#order + 1] = {tonumber(r), r, n} end
  end
  table.sort(order, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  for i, e in ipairs(order) do retries[i] = e[2] .. ':' .. integer(e[3]) end
  local created = ''
  if t.created_us then
    local us = tonumber(t.created_us)
    created = us < 0 and ('-' .. base36(-us)) or base36(us)
  end
  local known = (t.known and t.known ~= 0) and integer(t.known) or ''
  return (t.s and BATCH_CODE[t.s] or '') .. '|' .. (t.v or '') .. '|' .. (t.total or '') .. '|'
    .. created .. '|' .. known .. '|' .. table.concat(counts) .. '|' .. table.concat(retries, ',')
end
local EMPTY_BATCH = '||||||'

-- A batch in a hash of its own (`b:<id>`, the layout before `bt`) as a state table, or
-- nil. `cms` (the index's millisecond scores, before `created_us`) is kept in the table
-- for the writer to move the index entries (migrate_score); `created_at` is made again
-- from `created_us` when read.
local function legacy_batch(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local t = {}
  for j = 1, #flat, 2 do
    local field, value = flat[j], flat[j + 1]
    if field == 's' or field == 'v' or field == 'total' or field == 'created_us'
      or field == 'cms' then
      t[field] = value
    elseif field ~= 'created_at' then
      t[field] = tonumber(value)
    end
  end
  if t.cms then
    if t.created_us then t.cms = nil else t.created_us = t.cms .. '000' end
  end
  return t
end

-- The packed state of a batch (false if none), read from the campaign's batches hash
-- `batches` or, not yet moved, from its own hash (read only: nothing is written).
local function packed_batch(batches, batch_id)
  local packed = redis.call('HGET', batches, batch_id)
  if packed then return packed end
  local own = string.sub(batches, 1, #batches - #BATCHES_PART) .. BATCH_PART .. batch_id
  local t = legacy_batch(own)
  return t and pack_batch(t) or false
end
