-- Shared by every script that takes `campaign_keys` in KEYS: key layout, status tables,
-- linear hashing, the shadow of a running recount and the exact counter transitions.
-- The constants it names (CONTACT, LOAD, BATCH_PART, ...) come first, from lua.py, then
-- batch_codec.lua.
local STATS, FENCE, LAYOUT, SHADOW, BIDX = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
-- table.unpack: Lua 5.2 and later (fakeredis runs one); valkey has the 5.1 global
local unpack = unpack or table.unpack  -- luacheck: ignore 143
local TAG = string.sub(STATS, 1, #STATS - #STATS_PART)
local BATCHES, LEGACY_BATCH_PREFIX = TAG .. BATCHES_PART, TAG .. BATCH_PART
local CALL_FIELD = {}
for code, name in pairs(CALL) do CALL_FIELD[code] = 'calls:' .. name end
local BUCKET_PREFIX = {
  c = TAG .. CONTACT_BUCKET_PART, r = TAG .. RECORD_BUCKET_PART
}

-- Counter deltas are summed per (key, field) and written once by flush_bumps(): a slice
-- of many events touches the same few counters. Counters are never read by the scripts.
local pending, pending_keys = {}, {}
local function bump(key, field, by)
  local fields = pending[key]
  if not fields then
    fields = {}
    pending[key] = fields
    pending_keys[#pending_keys + 1] = key
  end
  fields[field] = (fields[field] or 0) + by
end

local function flush_bumps()
  for _, key in ipairs(pending_keys) do
    for field, by in pairs(pending[key]) do
      if by ~= 0 and redis.call('HINCRBY', key, field, by) == 0 then
        redis.call('HDEL', key, field)
      end
    end
  end
  pending, pending_keys = {}, {}
end

-- The shadow of a running recount: how many buckets of each kind it has counted (false
-- when none runs). Read once per call; only RECOUNT_STEP moves the cursors.
local shadow_at = nil
local function shadow()
  if shadow_at == nil then
    local m = redis.call('HMGET', SHADOW, 'c', 'r')
    shadow_at = m[1] and {c = tonumber(m[1]), r = tonumber(m[2])} or false
  end
  return shadow_at
end

-- Batches, read once per call into `batch_cache` (batch id -> state table, false: none),
-- changed there and written by flush_batches(). A batch still in a hash of its own
-- (`b:<id>`) is read from it, and moved into `bt` when the call's changes are written.
local batch_cache, batch_dirty, batch_order, batch_moved = {}, {}, {}, {}
local function batch_changed(batch_id)
  if not batch_dirty[batch_id] then
    batch_dirty[batch_id] = true
    batch_order[#batch_order + 1] = batch_id
  end
end

local function batch_state(batch_id)
  local t = batch_cache[batch_id]
  if t == nil then
    local packed = redis.call('HGET', BATCHES, batch_id)
    if packed then
      t = unpack_batch(packed)
    else
      t = legacy_batch(LEGACY_BATCH_PREFIX .. batch_id) or false
      if t then
        batch_moved[batch_id] = true
        batch_changed(batch_id)
      end
    end
    batch_cache[batch_id] = t
  end
  return t or nil
end

local function new_batch(batch_id)
  local t = {}
  batch_cache[batch_id] = t
  batch_changed(batch_id)
  return t
end

local function delete_batch(batch_id)
  batch_cache[batch_id] = false
  batch_changed(batch_id)
end

-- Index scores were milliseconds before commit a3f5d3d, kept in the batch hash as `cms`;
-- they are microseconds now, kept as `created_us`. A batch read with `cms` alone
-- (legacy_batch: `created_us` = `cms` * 1000) gives the index entries it has that score
-- (none is added) when it is written (a batch read from its own hash always is).
local function migrate_score(batch_id, t)
  redis.call('ZADD', BIDX, 'XX', t.created_us, batch_id)
  if t.s then redis.call('ZADD', KEYS[BIDX_BY_STATUS[t.s]], 'XX', t.created_us, batch_id) end
  t.cms = nil
end

local function flush_batches()
  for _, batch_id in ipairs(batch_order) do
    local t = batch_cache[batch_id]
    if t and t.cms then migrate_score(batch_id, t) end
    local packed = t and pack_batch(t) or EMPTY_BATCH
    if packed == EMPTY_BATCH then
      redis.call('HDEL', BATCHES, batch_id)
    else
      redis.call('HSET', BATCHES, batch_id, packed)
    end
    if batch_moved[batch_id] then redis.call('DEL', LEGACY_BATCH_PREFIX .. batch_id) end
  end
  batch_dirty, batch_order, batch_moved = {}, {}, {}
end

-- A counter change: to the campaign's counter, and to the shadow when the entity's bucket
-- is counted already (`mirror`).
local function tally(field, by, mirror)
  bump(STATS, field, by)
  if mirror then bump(SHADOW, field, by) end
end

-- The same for a batch's counter (named in the shadow by batch number: `n>field`).
local function batch_tally(batch_id, bn, field, by, mirror)
  local t = batch_state(batch_id) or new_batch(batch_id)
  local n = (t[field] or 0) + by
  t[field] = n ~= 0 and n or nil
  batch_changed(batch_id)
  if mirror then bump(SHADOW, bn .. '>' .. field, by) end
end

local function contact_delta(bn, batch_id, code, retry, by, mirror)
  local name = CONTACT_FIELD[code]
  tally(name, by, mirror)
  batch_tally(batch_id, bn, name, by, mirror)
  if CONTACT[code] == 'retrying' then
    tally('retry:' .. retry, by, mirror)
    batch_tally(batch_id, bn, 'retry:' .. retry, by, mirror)
  end
end

local function record_delta(code, follow_up, by, mirror)
  tally(CALL_FIELD[code], by, mirror)
  if follow_up == '1' then tally('calls:follow_up', by, mirror) end
end

-- `version|code|retry|batch number`, then (a terminal status, since batch progress)
-- `|minute` in base 36: the minute of that version's occurred_at since the epoch
local function parse_contact(packed)
  local v, c, r, bn, rest = string.match(packed, '^(%d+)|(%a)|(%d+)|(%d+)(.*)$')
  if not v then return nil end  -- not a state of either form
  if rest == '' then return v, c, r, bn, nil end
  local m = string.match(rest, '^|(%w+)$')
  if not m then return nil end  -- not a state of either form
  return v, c, r, bn, tonumber(m, 36)
end

-- `version|code|follow-up`, then (since time series) `|minute|talk ms` in base 36: the
-- minute of its occurred_at since the epoch, and its duration in milliseconds
local function parse_record(packed)
  local v, c, f, rest = string.match(packed, '^(%d+)|(%a)|(%d)(.*)$')
  local m, d = string.match(rest, '^|(%w+)|(%w+)$')
  return v, c, f, m and tonumber(m, 36), d and tonumber(d, 36)
end

-- a slice's events fall in few minutes: each minute's digits are worked out once per call
local minute36 = {}
local function base36_minute(minute)
  local text = minute36[minute]
  if not text then
    text = base36(minute)
    minute36[minute] = text
  end
  return text
end

-- Time series of call records by their own occurred_at: per minute (`tm:<hour>` hashes,
-- field = minute of the hour) and per quarter hour (`tq:<day>`, field = quarter of the
-- day); each value `completed|failed|busy|no_answer|follow_up|talk ms`. A key expires once
-- its resolution's retention has passed its end (a bucket past it is not written); the
-- index `ts` lists them (member `m<hour>` / `q<day>`, score = expiry) for the recount.
local SERIES_INDEX = TAG .. SERIES_INDEX_PART
local SPAN = {m = 3600000, q = 86400000}

local clock_ms = nil
local function now_ms()
  if not clock_ms then
    local t = redis.call('TIME')
    clock_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return clock_ms
end

-- Batch progress: a terminal contact counts, in its batch, at the minute of its latest
-- version's occurred_at (`tp:<hour>`, field `<batch number>:<minute of the hour>`). A hash
-- expires PROGRESS_RETAIN after its hour ends; a minute past that is not written.
local PROGRESS_PREFIX = TAG .. PROGRESS_PART

local progress_keys = {}
local function progress_delta(bn, minute, by)
  local hour = math.floor(minute / 60)
  local expires = (hour + 1) * 3600000 + PROGRESS_RETAIN
  if expires <= now_ms() then return end
  local key = PROGRESS_PREFIX .. hour
  bump(key, bn .. ':' .. (minute % 60), by)
  progress_keys[key] = expires
end

-- after flush_bumps(): the progress hashes written expire on time
local function flush_progress()
  for key, expires in pairs(progress_keys) do
    if redis.call('EXISTS', key) == 1 then
      redis.call('PEXPIREAT', key, string.format('%d', expires))
    end
  end
  progress_keys = {}
end

local series, series_keys = {}, {}
-- The buckets of one minute still kept: {kind, number, field, expiry, key, shadow field
-- prefix} for the minute and the quarter hour; worked out once per minute and call.
local minute_buckets = {}
local function buckets_of(minute)
  local out = minute_buckets[minute]
  if out then return out end
  local hour, day = math.floor(minute / 60), math.floor(minute / 1440)
  out = {}
  for _, b in ipairs({{'m', hour, minute % 60}, {'q', day, math.floor((minute % 1440) / 15)}}) do
    local expires = (b[2] + 1) * SPAN[b[1]] + RETAIN[b[1]]
    if expires > now_ms() then
      b[4] = expires
      b[5] = TAG .. 't' .. b[1] .. ':' .. b[2]
      b[6] = 'S' .. b[1] .. b[2] .. ':' .. b[3] .. ':'
      out[#out + 1] = b
    end
  end
  minute_buckets[minute] = out
  return out
end

-- A call record's part of one bucket, into the shadow of a running recount.
local function shadow_series(b, slot, follow_up, talk, by)
  local prefix = b[6]
  bump(SHADOW, prefix .. slot, by)
  if follow_up == '1' then bump(SHADOW, prefix .. 5, by) end
  if talk ~= 0 then bump(SHADOW, prefix .. 6, by * talk) end
end

-- A call record joins (`by` 1) or leaves (-1) its buckets; mirrored into a running
-- recount's shadow like the counters (`S<kind><number>:<field>:<slot>`).
local function series_delta(code, follow_up, minute, talk, by, mirror)
  if not minute then return end
  local slot = tonumber(SERIES_SLOT[CALL[code]])
  for _, b in ipairs(buckets_of(minute)) do
    local field, key = b[3], b[5]
    local fields = series[key]
    if not fields then
      fields = {}
      series[key] = fields
      series_keys[#series_keys + 1] = {key, b[1] .. b[2], b[4]}
    end
    local d = fields[field]
    if not d then
      d = {0, 0, 0, 0, 0, 0}
      fields[field] = d
    end
    d[slot] = d[slot] + by
    if follow_up == '1' then d[5] = d[5] + by end
    d[6] = d[6] + by * talk
    if mirror then shadow_series(b, slot, follow_up, talk, by) end
  end
end

local SIX = '^([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)$'
local function unpack_series(packed)
  if not packed then return {0, 0, 0, 0, 0, 0} end
  local a, b, c, d, e, f = string.match(packed, SIX)
  if a then
    return {tonumber(a), tonumber(b), tonumber(c), tonumber(d), tonumber(e), tonumber(f)}
  end
  local out, i = {0, 0, 0, 0, 0, 0}, 1
  for n in string.gmatch(packed, '[^|]+') do
    out[i] = tonumber(n)
    i = i + 1
  end
  return out
end

local function pack_series(d)
  for i = 1, 6 do
    if d[i] ~= 0 then
      return string.format('%d|%d|%d|%d|%d|%d', d[1], d[2], d[3], d[4], d[5], d[6])
    end
  end
  return nil
end

local function flush_series()
  for _, entry in ipairs(series_keys) do
    local key, member, expires = entry[1], entry[2], entry[3]
    for field, d in pairs(series[key]) do
      local cur = unpack_series(redis.call('HGET', key, field))
      for i = 1, 6 do cur[i] = cur[i] + d[i] end
      local packed = pack_series(cur)
      if packed then redis.call('HSET', key, field, packed) else redis.call('HDEL', key, field) end
    end
    if redis.call('EXISTS', key) == 1 then
      redis.call('PEXPIREAT', key, string.format('%d', expires))
      redis.call('ZADD', SERIES_INDEX, string.format('%d', expires), member)
    end
  end
  if #series_keys > 0 then
    redis.call('ZREMRANGEBYSCORE', SERIES_INDEX, '-inf', string.format('%d', now_ms()))
  end
  series, series_keys = {}, {}
end

-- Batch numbers: a contact's state names its batch by a number, per campaign, allocated
-- on first sight and kept for good (a batch deleted and seen again keeps its number).
local numbers, ids = {}, {}
local function batch_number(batch_id)
  local n = numbers[batch_id]
  if n then return n end
  n = redis.call('HGET', LAYOUT, 'b:' .. batch_id)
  if not n then
    n = tostring(redis.call('HINCRBY', LAYOUT, '#', 1))
    redis.call('HSET', LAYOUT, 'b:' .. batch_id, n, '#' .. n, batch_id)
  end
  numbers[batch_id], ids[n] = n, batch_id
  return n
end

local function batch_id_of(n)
  local batch_id = ids[n]
  if not batch_id then
    batch_id = redis.call('HGET', LAYOUT, '#' .. n)
    ids[n] = batch_id
  end
  return batch_id
end

-- Linear hashing, per kind ('c' contacts, 'r' records): 2^L + P buckets, N entities.
local layouts = {}
local function layout(kind)
  local t = layouts[kind]
  if not t then
    local m = redis.call('HMGET', LAYOUT, kind .. ':L', kind .. ':P', kind .. ':N')
    t = {L = tonumber(m[1] or '0'), P = tonumber(m[2] or '0'), N = tonumber(m[3] or '0')}
    t.size = 2 ^ t.L
    layouts[kind] = t
  end
  return t
end

local function bucket_of(t, h)
  local b = h % t.size
  if b < t.P then b = h % (2 * t.size) end
  return b
end

-- the digest (decimal, below 2^63) modulo 2^HASH_BITS, exactly, as keys.bucket_hash
-- (six digits at a time: h < 2^30, so h * 10^6 + 999999 stays exact in a double)
local function hash_of(digest)
  local n = #digest
  local first = (n - 1) % 6 + 1
  local h = tonumber(string.sub(digest, 1, first)) % HASH_MOD
  for i = first + 1, n, 6 do
    h = (h * 1000000 + tonumber(string.sub(digest, i, i + 5))) % HASH_MOD
  end
  return h
end

-- What one stored entity adds to the counters (`by` = 1) or takes away (-1), in the
-- shadow only: the recount's own tally.
local function count_entry(kind, packed, by)
  if kind == 'c' then
    local v, c, r, bn = parse_contact(packed)
    bump(SHADOW, 'contacts', by)
    bump(SHADOW, bn .. '>known', by)
    local name = 'contacts:' .. CONTACT[c]
    bump(SHADOW, name, by)
    bump(SHADOW, bn .. '>' .. name, by)
    if CONTACT[c] == 'retrying' then
      bump(SHADOW, 'retry:' .. r, by)
      bump(SHADOW, bn .. '>retry:' .. r, by)
    end
  else
    local v, c, f, m, d = parse_record(packed)
    bump(SHADOW, 'calls:' .. CALL[c], by)
    if f == '1' then bump(SHADOW, 'calls:follow_up', by) end
    if m then
      for _, b in ipairs(buckets_of(m)) do shadow_series(b, SERIES_SLOT[CALL[c]], f, d, by) end
    end
  end
end

-- Split bucket P into P and P + 2^L. Entries that move to the new bucket leave the
-- shadow if P was counted already: the new bucket is beyond the recount's cursor, and
-- they are counted again there.
local function split(kind, t)
  local from = BUCKET_PREFIX[kind] .. t.P
  local to_n = t.P + t.size
  local flat = redis.call('HGETALL', from)
  local s = shadow()
  local uncount = s and t.P < s[kind]
  local moved, names = {}, {}
  for j = 1, #flat, 2 do
    if hash_of(flat[j]) % (2 * t.size) == to_n then
      moved[#moved + 1] = flat[j]
      moved[#moved + 1] = flat[j + 1]
      names[#names + 1] = flat[j]
      if uncount then count_entry(kind, flat[j + 1], -1) end
    end
  end
  if #names > 0 then
    redis.call('HSET', BUCKET_PREFIX[kind] .. to_n, unpack(moved))
    redis.call('HDEL', from, unpack(names))
  end
  t.P = t.P + 1
  if t.P == t.size then
    t.L, t.P, t.size = t.L + 1, 0, 2 * t.size
  end
  t.dirty = true
end

-- An entity was added (`by` 1) or removed (-1); buckets split while over LOAD on average,
-- once there are more than ONE_BUCKET entities.
local function resize(kind, t, by)
  t.N = t.N + by
  t.dirty = true
  while t.N > ONE_BUCKET and t.N > LOAD * (t.size + t.P) do split(kind, t) end
end

local function save_layouts()
  for kind, t in pairs(layouts) do
    if t.dirty then
      redis.call('HSET', LAYOUT, kind .. ':L', t.L, kind .. ':P', t.P, kind .. ':N', t.N)
    end
  end
end

-- The bucket of an entity, and whether a running recount has counted it already.
local function locate(kind, h)
  local t = layout(kind)
  local b = bucket_of(t, h)
  local s = shadow()
  return BUCKET_PREFIX[kind] .. b, t, (s and b < s[kind]) or false
end

-- A batch known only from its contacts (version 0, no batch.upserted) exists while a
-- contact names it. Once the last one moved away or was removed it goes -- state, index
-- entries, `batches:pending` -- as if never seen: the final state must be the same in any
-- delivery order. Called once the call's counter changes are made, when `known` is final.
local function drop_if_unnamed(batch_id)
  local t = batch_state(batch_id)
  if t and t.s and tonumber(t.v or '0') == 0 and (t.known or 0) <= 0 then
    delete_batch(batch_id)
    redis.call('ZREM', BIDX, batch_id)
    redis.call('ZREM', KEYS[BIDX_BY_STATUS[t.s]], batch_id)
    bump(STATS, 'batches:' .. t.s, -1)
  end
end

-- Everything a call changed, written: series, batches no contact names any more, counters,
-- batches, progress expiries, layouts. `left`: batch ids a contact left.
local function write_all(left)
  flush_series()
  for batch_id in pairs(left) do drop_if_unnamed(batch_id) end
  flush_bumps()
  flush_batches()
  flush_progress()
  save_layouts()
end
