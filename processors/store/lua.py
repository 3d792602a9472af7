"""Every Lua script dialer-stats runs, each with its KEYS / ARGV / return contract.

Every script gets the campaign's fixed keys in KEYS (`campaign_keys`); all of them share the
`{campaign_id}` hash tag, so each call touches one Redis Cluster slot. Entity keys -- state
buckets and batch hashes -- are built inside the scripts from the stats key's tag (the same
tag, so the same slot), because only the script knows them: the bucket an entity lives in
depends on how far the campaign's buckets have grown (linear hashing, see `keys.LOAD`), and
the batch a contact leaves is named only by its stored state. All scripts share one prelude
of helpers, so a transition and the layout are written once.

Entity state, per bucket hash (listpack-encoded):
- contact: digest -> `version|status code|retry_count|batch number`
- call record: digest -> `version|status code|follow-up flag`
Digests are `keys.digest` of the dialer's ids; batch numbers are per campaign, in the layout
hash (`keys.layout`), and never reused.

A chunked recount (RECOUNT_BEGIN, RECOUNT_STEP, RECOUNT_END) counts the buckets a few at a
time into a shadow hash; while it runs, every change to an entity in a bucket it has already
counted is mirrored into the shadow, so at the end the shadow holds what the counters should
be at that instant.
"""

from __future__ import annotations

from typing import Final

from processors.domain.contract import (
    BATCH_STATUSES,
    CALL_BY_CODE,
    CALL_STATUSES,
    CONTACT_BY_CODE,
    CONTACT_CODES,
    TERMINAL_STATUSES,
)
from processors.store import keys

#: Fixed KEYS of every script: stats, fence, layout, shadow, batch index, per-status indexes.
FIXED_KEYS: Final = 5 + len(BATCH_STATUSES)
FIELDS_PER_EVENT: Final = 12

#: Separators of the APPLY_SLICE payload (ids and statuses never contain them).
EVENT_SEP: Final = "\x1e"
FIELD_SEP: Final = "\x1f"


def campaign_keys(campaign_id: str) -> list[str]:
    """KEYS of every script: stats, fence, layout, shadow, batch index, per-status indexes."""
    fixed = [
        keys.stats(campaign_id),
        keys.fence(campaign_id),
        keys.layout(campaign_id),
        keys.shadow(campaign_id),
        keys.batch_index(campaign_id),
    ]
    fixed.extend(keys.batch_index(campaign_id, status) for status in BATCH_STATUSES)
    return fixed


def _lua_table(mapping: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}='{v}'" for k, v in mapping.items()) + "}"


_BATCH_INDEX_SLOTS = "{" + ", ".join(f"{s}={6 + i}" for i, s in enumerate(BATCH_STATUSES)) + "}"

# Shared by every script: key layout, status tables, linear hashing, the shadow of a running
# recount and the exact counter transitions.
_PRELUDE: Final = (
    """
local STATS, FENCE, LAYOUT, SHADOW, BIDX = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local unpack = unpack or table.unpack
local BIDX_BY_STATUS = """
    + _BATCH_INDEX_SLOTS
    + """
local CONTACT = """
    + _lua_table(CONTACT_BY_CODE)
    + """
local CALL = """
    + _lua_table(CALL_BY_CODE)
    + f"""
local LOAD, HASH_MOD = {keys.LOAD}, {2**keys.HASH_BITS}
local TAG = string.sub(STATS, 1, #STATS - {len(keys.STATS_PART)})
local BATCH_PREFIX = TAG .. '{keys.BATCH_PART}'
local BUCKET_PREFIX = {{
  c = TAG .. '{keys.CONTACT_BUCKET_PART}', r = TAG .. '{keys.RECORD_BUCKET_PART}'
}}
"""
    + """
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

-- A counter change: to the counter, and to the shadow when the entity's bucket is counted
-- already (`mirror`). Batch counters are named in the shadow by batch number: `n>field`.
local function tally(key, bn, field, by, mirror)
  bump(key, field, by)
  if mirror then bump(SHADOW, bn and (bn .. '>' .. field) or field, by) end
end

local function contact_delta(bn, bkey, code, retry, by, mirror)
  local name = 'contacts:' .. CONTACT[code]
  tally(STATS, nil, name, by, mirror)
  tally(bkey, bn, name, by, mirror)
  if CONTACT[code] == 'retrying' then
    tally(STATS, nil, 'retry:' .. retry, by, mirror)
    tally(bkey, bn, 'retry:' .. retry, by, mirror)
  end
end

local function record_delta(code, follow_up, by, mirror)
  tally(STATS, nil, 'calls:' .. CALL[code], by, mirror)
  if follow_up == '1' then tally(STATS, nil, 'calls:follow_up', by, mirror) end
end

-- `version|code|retry|batch number`, then (a terminal status, since batch progress)
-- `|minute` in base 36: the minute of that version's occurred_at since the epoch
local function parse_contact(packed)
  local v, c, r, bn = string.match(packed, '^(%d+)|(%a)|(%d+)|(%d+)$')
  if v then return v, c, r, bn, nil end
  local m
  v, c, r, bn, m = string.match(packed, '^(%d+)|(%a)|(%d+)|(%d+)|(%w+)$')
  return v, c, r, bn, m and tonumber(m, 36)
end

-- `version|code|follow-up`, then (since time series) `|minute|talk ms` in base 36: the
-- minute of its occurred_at since the epoch, and its duration in milliseconds
local function parse_record(packed)
  local v, c, f, rest = string.match(packed, '^(%d+)|(%a)|(%d)(.*)$')
  local m, d = string.match(rest, '^|(%w+)|(%w+)$')
  return v, c, f, m and tonumber(m, 36), d and tonumber(d, 36)
end

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

-- Time series of call records by their own occurred_at: per minute (`tm:<hour>` hashes,
-- field = minute of the hour) and per quarter hour (`tq:<day>`, field = quarter of the
-- day); each value `completed|failed|busy|no_answer|follow_up|talk ms`. A key expires once
-- its resolution's retention has passed its end (a bucket past it is not written); the
-- index `ts` lists them (member `m<hour>` / `q<day>`, score = expiry) for the recount.
local SERIES_SLOT = """
    + _lua_table({s: str(i + 1) for i, s in enumerate(CALL_STATUSES)})
    + f"""
local SERIES_INDEX = TAG .. '{keys.SERIES_INDEX_PART}'
local RETAIN = {{m = {keys.MINUTE_RETENTION_MS}, q = {keys.QUARTER_RETENTION_MS}}}
local SPAN = {{m = 3600000, q = 86400000}}
"""
    + """
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
local TERMINAL = """
    + _lua_table({CONTACT_CODES[s]: "true" for s in TERMINAL_STATUSES})
    + f"""
local PROGRESS_PREFIX = TAG .. '{keys.PROGRESS_PART}'
local PROGRESS_RETAIN = {keys.PROGRESS_RETENTION_MS}
"""
    + """
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
local function hash_of(digest)
  local h = 0
  for i = 1, #digest do h = (h * 10 + string.byte(digest, i) - 48) % HASH_MOD end
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

-- An entity was added (`by` 1) or removed (-1); buckets split while over LOAD on average.
local function resize(kind, t, by)
  t.N = t.N + by
  t.dirty = true
  while t.N > LOAD * (t.size + t.P) do split(kind, t) end
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
-- contact names it. Once the last one moved away or was removed it goes -- hash, index
-- entries, `batches:pending` -- as if never seen: the final state must be the same in any
-- delivery order. Called after flush_bumps(), when `known` is final; flush again after.
local function drop_if_unnamed(bkey, batch_id)
  local meta = redis.call('HMGET', bkey, 's', 'v', 'known')
  local s = meta[1]
  if s and tonumber(meta[2] or '0') == 0 and tonumber(meta[3] or '0') <= 0 then
    redis.call('DEL', bkey)
    redis.call('ZREM', BIDX, batch_id)
    redis.call('ZREM', KEYS[BIDX_BY_STATUS[s]], batch_id)
    bump(STATS, 'batches:' .. s, -1)
  end
end

-- Index scores were milliseconds before commit a3f5d3d, kept in the batch hash as `cms`;
-- they are microseconds now, kept as `created_us`. A hash still holding `cms` (and no
-- `created_us`) is rewritten: `created_us` = `cms` * 1000, and the index entries the batch
-- has take that score (none is added). Returns the score.
local function migrate_score(bkey, batch_id, s, cms)
  local score = cms .. '000'
  redis.call('HSET', bkey, 'created_us', score)
  redis.call('HDEL', bkey, 'cms')
  redis.call('ZADD', BIDX, 'XX', score, batch_id)
  if s then redis.call('ZADD', KEYS[BIDX_BY_STATUS[s]], 'XX', score, batch_id) end
  return score
end
"""
)

# APPLY_SLICE: apply the events of one campaign from one fetched batch, atomically.
#
# KEYS        campaign_keys(campaign)
# ARGV[1]     F, the number of partitions the events come from; 0 = repair mode (no
#             fence, no tallies: entity states re-applied by reconciliation)
# ARGV[2..]   F fence fields (topic:partition), then their F log epochs
# ARGV[2+2F]  the events, separated by RS (\30); each is FIELDS_PER_EVENT fields separated
#             by US (\31), in offset order per partition:
#             fence number (1..F, 0 in repair mode), offset, organization_id, version,
#             kind (b|c|r), entity (batch: its id; contact, record: keys.digest of the id),
#             keys.bucket_hash of the digest (contacts, records), status code or name,
#             number (total_contacts | retry_count | follow-up flag), extra (batch:
#             created_at ISO; contact: batch_id; record: duration in ms), score (batch:
#             created_at in microseconds since the epoch), occurred_at ms
# Returns     one outcome code per event: 0 applied, 1 replayed (at or below the fence),
#             2 stale or duplicate version, 3 tenant mismatch -- also for a replayed event:
#             the owner never changes once set, so the verdict is the same on a retry and
#             a dead letter lost in a crash is sent again.
# Tallies     `events:<outcome>` in the stats hash, by the outcome of each offset's first
#             delivery: a replay counts as `events:replayed` only, whatever code it returns.
#
# Batch state: hash `s` status, `v` version (0: known only from contacts), `total`,
# `created_at` (ISO, UTC), `created_us` (the index score), `known` contacts, counters.
# A batch event (applied or stale) rewrites a hash of the millisecond layout (`cms`, see
# migrate_score); contact events leave that to RECOUNT.
# A newer contact version naming another batch moves the contact: its status and retry
# bucket, and `known`, leave the old batch's counters and join the new one's.
APPLY_SLICE: Final = (
    _PRELUDE
    + """
local nf = tonumber(ARGV[1])
local repair = nf == 0
local EVENT = '^' .. string.rep('([^\\31]*)\\31', """
    + str(FIELDS_PER_EVENT - 1)
    + """) .. '([^\\31]*)$'

local function ensure_batch(bkey, batch_id)
  if redis.call('HSETNX', bkey, 's', 'pending') == 1 then
    redis.call('HSET', bkey, 'v', 0)
    bump(STATS, 'batches:pending', 1)
    redis.call('ZADD', BIDX, '+inf', batch_id)
    redis.call('ZADD', KEYS[BIDX_BY_STATUS['pending']], '+inf', batch_id)
  end
end

local function apply_batch(batch_id, ver, ver_s, status, total, created_at, score)
  local bkey = BATCH_PREFIX .. batch_id
  local cur = redis.call('HMGET', bkey, 's', 'v', 'created_us', 'cms')
  if cur[4] then
    if cur[3] then
      redis.call('HDEL', bkey, 'cms')
    else
      migrate_score(bkey, batch_id, cur[1], cur[4])
    end
  end
  if cur[1] then
    if ver <= tonumber(cur[2]) then return 2 end
    bump(STATS, 'batches:' .. cur[1], -1)
    redis.call('ZREM', KEYS[BIDX_BY_STATUS[cur[1]]], batch_id)
  end
  redis.call('HSET', bkey, 's', status, 'v', ver_s, 'total', total, 'created_at', created_at,
    'created_us', score)
  bump(STATS, 'batches:' .. status, 1)
  redis.call('ZADD', BIDX, score, batch_id)
  redis.call('ZADD', KEYS[BIDX_BY_STATUS[status]], score, batch_id)
  return 0
end

-- batches a contact left in this call: dropped at the end if nothing names them any more
-- (deferred so that a batch emptied and refilled within the slice is left alone)
local left = {}

local function apply_contact(digest, h, ver, ver_s, code, retry, batch_id, occurred_s)
  local skey, t, mirror = locate('c', tonumber(h))
  local cur = redis.call('HGET', skey, digest)
  local v, c, r, old_bn, old_minute
  if cur then
    v, c, r, old_bn, old_minute = parse_contact(cur)
    if ver <= tonumber(v) then return 2 end
    if old_minute then progress_delta(old_bn, old_minute, -1) end
  end
  -- numbered only now: a stale event naming an unknown batch leaves no number behind
  local bn, bkey = batch_number(batch_id), BATCH_PREFIX .. batch_id
  if cur then
    if old_bn == bn then
      contact_delta(bn, bkey, c, r, -1, mirror)
    else
      local old_id = batch_id_of(old_bn)
      local old = BATCH_PREFIX .. old_id
      contact_delta(old_bn, old, c, r, -1, mirror)
      tally(old, old_bn, 'known', -1, mirror)
      left[old_id] = old
      ensure_batch(bkey, batch_id)
      tally(bkey, bn, 'known', 1, mirror)
    end
  else
    ensure_batch(bkey, batch_id)
    tally(bkey, bn, 'known', 1, mirror)
    tally(STATS, nil, 'contacts', 1, mirror)
  end
  local packed = ver_s .. '|' .. code .. '|' .. retry .. '|' .. bn
  if TERMINAL[code] then
    local minute = math.floor(tonumber(occurred_s) / 60000)
    packed = packed .. '|' .. base36(minute)
    progress_delta(bn, minute, 1)
  end
  redis.call('HSET', skey, digest, packed)
  contact_delta(bn, bkey, code, retry, 1, mirror)
  if not cur then resize('c', t, 1) end
  return 0
end

local function apply_record(digest, h, ver, ver_s, code, follow_up, talk_s, occurred_s)
  local skey, t, mirror = locate('r', tonumber(h))
  local cur = redis.call('HGET', skey, digest)
  if cur then
    local v, c, f, m, d = parse_record(cur)
    -- a state from before time series is rewritten by a repair of the same version
    if ver < tonumber(v) or (ver == tonumber(v) and (m or not repair)) then return 2 end
    record_delta(c, f, -1, mirror)
    series_delta(c, f, m, d, -1, mirror)
  end
  local minute, talk = math.floor(tonumber(occurred_s) / 60000), tonumber(talk_s)
  redis.call('HSET', skey, digest,
    ver_s .. '|' .. code .. '|' .. follow_up .. '|' .. base36(minute) .. '|' .. base36(talk))
  record_delta(code, follow_up, 1, mirror)
  series_delta(code, follow_up, minute, talk, 1, mirror)
  if not cur then resize('r', t, 1) end
  return 0
end

-- fences: per partition the epoch and the last applied offset of this campaign
local fence_field, fence_epoch, fence_at, fence_max = {}, {}, {}, {}
for i = 1, nf do
  fence_field[i], fence_epoch[i] = ARGV[1 + i], ARGV[1 + nf + i]
  fence_at[i] = -1
end
if nf > 0 then
  local stored = redis.call('HMGET', FENCE, unpack(fence_field))
  for i = 1, nf do
    if stored[i] then
      local e, o = string.match(stored[i], '^(.*):(%-?%d+)$')
      if e == fence_epoch[i] then fence_at[i] = tonumber(o) end
    end
    fence_max[i] = fence_at[i]
  end
end

local org = redis.call('HGET', STATS, 'org')
local out = {}
local tally_of = {0, 0, 0, 0}
local last_event_ms = 0
local n = 0

for rec in string.gmatch(ARGV[2 + 2 * nf], '[^\\30]+') do
  n = n + 1
  local fence, offset_s, event_org, ver_s, kind, id, h, status, num, extra, score,
    occurred_s = string.match(rec, EVENT)
  local f, offset, ver = tonumber(fence), tonumber(offset_s), tonumber(ver_s)
  local code, counted
  if f > 0 and offset <= fence_at[f] then
    -- a replay changes nothing; a foreign event gets its (unchanging) verdict again
    code = (org and event_org ~= org) and 3 or 1
    counted = 1
  else
    if f > 0 and offset > fence_max[f] then fence_max[f] = offset end
    if not org then
      org = event_org
      redis.call('HSET', STATS, 'org', org)
    end
    if event_org ~= org then
      code = 3
    elseif kind == 'b' then
      code = apply_batch(id, ver, ver_s, status, num, extra, score)
    elseif kind == 'c' then
      code = apply_contact(id, h, ver, ver_s, status, num, extra, occurred_s)
    else
      code = apply_record(id, h, ver, ver_s, status, num, extra, occurred_s)
    end
    counted = code
    local occurred_ms = tonumber(occurred_s)
    if code == 0 and occurred_ms > last_event_ms then last_event_ms = occurred_ms end
  end
  tally_of[counted + 1] = tally_of[counted + 1] + 1
  out[n] = code
end

flush_series()
flush_bumps()
for batch_id, bkey in pairs(left) do drop_if_unnamed(bkey, batch_id) end
flush_bumps()
flush_progress()
save_layouts()
if not repair then
  for i = 1, nf do
    if fence_max[i] > fence_at[i] then
      redis.call('HSET', FENCE, fence_field[i],
        fence_epoch[i] .. ':' .. string.format('%d', fence_max[i]))
    end
  end
  local names = {'applied', 'replayed', 'stale', 'tenant_mismatch'}
  for k = 1, 4 do
    if tally_of[k] > 0 then redis.call('HINCRBY', STATS, 'events:' .. names[k], tally_of[k]) end
  end
end
if tally_of[1] > 0 then
  redis.call('HINCRBY', STATS, 'rev', 1)
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('HSET', STATS, 'applied_at_ms', string.format('%d', now_ms))
  local prev = tonumber(redis.call('HGET', STATS, 'last_event_ms') or '0')
  if last_event_ms > prev then
    redis.call('HSET', STATS, 'last_event_ms', string.format('%d', last_event_ms))
  end
end
return out
"""
)

# LOOKUP: the stored states of some entities, found where the layout has them now.
#
# KEYS        campaign_keys(campaign)
# ARGV        pairs: kind (c|r), digest
# Returns     one packed state per pair, false when absent
LOOKUP: Final = (
    _PRELUDE
    + """
local out = {}
for i = 1, #ARGV, 2 do
  local skey = locate(ARGV[i], hash_of(ARGV[i + 1]))
  out[#out + 1] = redis.call('HGET', skey, ARGV[i + 1])
end
return out
"""
)

# REMOVE_ENTITIES: forget entities the source does not have, with their counter deltas --
# only while the worker has applied nothing at or beyond the offsets the source was read to.
#
# KEYS        campaign_keys(campaign)
# ARGV[1]     number P of partition ends that follow
# ARGV[2..]   P pairs: fence field (topic:partition), end offset read by the source
# then        pairs: kind (b|c|r), entity (batch id, or the digest of a contact / record)
# Returns     number of entities removed, or -1 when the worker is ahead (nothing changed).
#             A batch known only from contacts goes with the last contact that named it.
REMOVE_ENTITIES: Final = (
    _PRELUDE
    + """
local ends = {}
local p = tonumber(ARGV[1])
for i = 0, p - 1 do ends[ARGV[2 + 2 * i]] = tonumber(ARGV[3 + 2 * i]) end
local fences = redis.call('HGETALL', FENCE)
for i = 1, #fences, 2 do
  local offset = tonumber(string.match(fences[i + 1], ':(%-?%d+)$'))
  local limit = ends[fences[i]]
  if limit == nil or offset >= limit then return -1 end
end
local removed = 0
local left = {}
for i = 2 + 2 * p, #ARGV, 2 do
  local kind, id = ARGV[i], ARGV[i + 1]
  if kind == 'c' or kind == 'r' then
    local skey, t, mirror = locate(kind, hash_of(id))
    local cur = redis.call('HGET', skey, id)
    if cur then
      redis.call('HDEL', skey, id)
      removed = removed + 1
      if kind == 'c' then
        local v, c, r, bn, minute = parse_contact(cur)
        local batch_id = batch_id_of(bn)
        local bkey = BATCH_PREFIX .. batch_id
        if minute then progress_delta(bn, minute, -1) end
        tally(STATS, nil, 'contacts', -1, mirror)
        tally(bkey, bn, 'known', -1, mirror)
        contact_delta(bn, bkey, c, r, -1, mirror)
        left[batch_id] = bkey
      else
        local v, c, f, m, d = parse_record(cur)
        record_delta(c, f, -1, mirror)
        series_delta(c, f, m, d, -1, mirror)
      end
      resize(kind, t, -1)
    end
  else
    local key = BATCH_PREFIX .. id
    local s = redis.call('HGET', key, 's')
    if s then
      bump(STATS, 'batches:' .. s, -1)
      redis.call('DEL', key)
      redis.call('ZREM', BIDX, id)
      redis.call('ZREM', KEYS[BIDX_BY_STATUS[s]], id)
      removed = removed + 1
    end
  end
end
flush_series()
flush_bumps()
for batch_id, bkey in pairs(left) do drop_if_unnamed(bkey, batch_id) end
flush_bumps()
flush_progress()
save_layouts()
if removed > 0 then redis.call('HINCRBY', STATS, 'rev', 1) end
return removed
"""
)

# MIGRATE_STATES: move one bucket of the fixed layout (plain ids) into the growing one.
#
# KEYS        campaign_keys(campaign), then the old bucket
# ARGV[1]     kind (c|r)
# ARGV[2..]   triples: digest, old field (the id), state with the batch id (contacts)
# Returns     number of states moved. A state the new layout holds in the same or a newer
#             version is kept (a worker of the new layout applied it); counters are left
#             alone -- a correcting recount follows (`Store.migrate_campaign`).
MIGRATE_STATES: Final = (
    _PRELUDE
    + """
local kind = ARGV[1]
local moved = 0
for i = 2, #ARGV, 3 do
  local digest, packed = ARGV[i], ARGV[i + 2]
  local skey, t = locate(kind, hash_of(digest))
  local cur = redis.call('HGET', skey, digest)
  local v = tonumber(string.match(packed, '^(%d+)|'))
  if kind == 'c' then
    local head, batch_id = string.match(packed, '^(%d+|%a|%d+)|(.*)$')
    packed = head .. '|' .. batch_number(batch_id)
  end
  if not cur or tonumber(string.match(cur, '^(%d+)|')) < v then
    redis.call('HSET', skey, digest, packed)
    moved = moved + 1
    if not cur then resize(kind, t, 1) end
  end
end
redis.call('DEL', KEYS[#KEYS])
save_layouts()
return moved
"""
)

# Chunked recount: RECOUNT_BEGIN, then RECOUNT_STEP until it answers 1, then RECOUNT_END.
# Each call reads a bounded number of entities, so Redis serves others between them; the
# worker's changes meanwhile are mirrored into the shadow (see the module's docstring).
#
# RECOUNT_BEGIN  ARGV: token, shadow expiry in ms. Starts a recount; returns 1, or 0 while
#                another one runs (its shadow lives until it ends or expires: wait).
RECOUNT_BEGIN: Final = (
    _PRELUDE
    + """
if redis.call('EXISTS', SHADOW) == 1 then return 0 end
redis.call('HSET', SHADOW, 'tok', ARGV[1], 'c', 0, 'r', 0)
redis.call('PEXPIRE', SHADOW, ARGV[2])
return 1
"""
)

_COUNT_BUCKETS: Final = """
-- Count buckets from the cursors on, contacts first, until `budget` entities were read;
-- true when every bucket is counted.
local function count_buckets(budget)
  local seen = 0
  for _, kind in ipairs({'c', 'r'}) do
    local t = layout(kind)
    local cursor = tonumber(redis.call('HGET', SHADOW, kind))
    local total = t.size + t.P
    while cursor < total and seen < budget do
      local flat = redis.call('HGETALL', BUCKET_PREFIX[kind] .. cursor)
      for j = 2, #flat, 2 do count_entry(kind, flat[j], 1) end
      seen = seen + #flat / 2 + 1
      cursor = cursor + 1
    end
    flush_bumps()
    redis.call('HSET', SHADOW, kind, cursor)
    if cursor < total then return false end
  end
  return true
end
"""

# RECOUNT_STEP   ARGV: token, budget (entities to read at most), shadow expiry in ms.
#                Returns 1 when every bucket is counted, 0 when more remain, -1 when the
#                recount is gone (expired or replaced: begin again).
RECOUNT_STEP: Final = (
    _PRELUDE
    + _COUNT_BUCKETS
    + """
if redis.call('HGET', SHADOW, 'tok') ~= ARGV[1] then return -1 end
local done = count_buckets(tonumber(ARGV[2]))
redis.call('PEXPIRE', SHADOW, ARGV[3])
return done and 1 or 0
"""
)

# Comparing, after the last step: RECOUNT_BATCHES for the batches, a bounded number per
# call, then RECOUNT_END for the campaign's stats. The shadow stays live until RECOUNT_END
# (every change is mirrored into it once all buckets are counted), so each comparison is
# exact at the instant of its own call. The caller names the counter fields the shadow
# holds (from an HSCAN of it); each call also takes every counter field the hash itself
# holds: a field the shadow gained after the scan was mirrored from a change that wrote
# the counter too.
#
# ARGV[1]     token
# ARGV[2]     '0' correct, '1' dry run (report only); '2' and '3' the same, and report
#             every counter checked, equal or not (a census)
# Returns     {status, drift...}: status 0 done, -1 the recount is gone (begin again);
#             drift as flat quadruples scope ('stats' | batch id | 'index:' .. batch id),
#             field, found, expected. A counter missing from its hash is found 0 (a census
#             leaves out counters absent and expected 0).
_COMPARE: Final = """
if redis.call('HGET', SHADOW, 'tok') ~= ARGV[1] then return {-1} end
count_buckets(1e15)  -- buckets split off since the last step
local dry = ARGV[2] == '1' or ARGV[2] == '3'
local census = ARGV[2] == '2' or ARGV[2] == '3'
local out = {0}
local fixes = 0
-- numbers as integers (tostring would round past 14 digits, in exponent form)
local function text(x)
  return type(x) == 'number' and string.format('%d', x) or tostring(x)
end
local function report(scope, field, found, want)
  out[#out + 1] = scope
  out[#out + 1] = field
  out[#out + 1] = text(found)
  out[#out + 1] = text(want)
end
local function drift(scope, field, found, want)
  fixes = fixes + 1
  report(scope, field, found, want)
end

-- Compare the counter fields of `key` with the shadow's (`prefix` .. field there); `names`
-- are the shadow's fields for it from the caller's scan.
local function reconcile_hash(key, scope, prefix, names, is_counter)
  local flat = redis.call('HGETALL', key)
  local found, fields = {}, {}
  for j = 1, #flat, 2 do
    if is_counter(flat[j]) then
      found[flat[j]] = flat[j + 1]
      fields[#fields + 1] = flat[j]
    end
  end
  for _, name in ipairs(names) do
    if not found[name] then fields[#fields + 1] = name end
  end
  if #fields == 0 then return end
  local shadow_names = {}
  for i, name in ipairs(fields) do shadow_names[i] = prefix .. name end
  local want = redis.call('HMGET', SHADOW, unpack(shadow_names))
  for i, field in ipairs(fields) do
    local e = tonumber(want[i] or '0')
    local f = found[field]
    if tonumber(f or '0') ~= e then
      drift(scope, field, f or 0, e)
      if not dry then
        if e == 0 then redis.call('HDEL', key, field) else redis.call('HSET', key, field, e) end
      end
    elseif census and f then
      report(scope, field, f, e)
    end
  end
end
"""

# RECOUNT_BATCHES: batch metadata, indexes and counters of some batches.
#
# ARGV[3]     shadow expiry in ms
# ARGV[4..]   per batch: its id, the number k of shadow fields named, then those k names
#             A batch with contacts but no hash is known only from them (made pending); one
#             known only from contacts that none names any more is gone (reported as its
#             `s` found, '' expected), as APPLY_SLICE would have left it. A batch hash of
#             the millisecond layout (`cms`) is rewritten (migrate_score) and reported as
#             ('migrated', batch id, cms, created_us), not as drift; a dry run reports it
#             alone and takes the index's millisecond score for a right one.
RECOUNT_BATCHES: Final = (
    _PRELUDE
    + _COUNT_BUCKETS
    + _COMPARE
    + """
local function same_score(at, score)
  return at and score and (tostring(at) == tostring(score) or tonumber(at) == tonumber(score))
end
local function batch_counter(field)
  return field == 'known' or string.find(field, '^contacts:') or string.find(field, '^retry:')
end

local i = 4
while i <= #ARGV do
  local batch_id, k = ARGV[i], tonumber(ARGV[i + 1])
  local names = {}
  for j = 1, k do names[j] = ARGV[i + 1 + j] end
  i = i + 2 + k
  local key = BATCH_PREFIX .. batch_id
  local n = redis.call('HGET', LAYOUT, 'b:' .. batch_id)
  local prefix = (n or 'none') .. '>'
  local named = n and tonumber(redis.call('HGET', SHADOW, prefix .. 'known') or '0') > 0
  local meta = redis.call('HMGET', key, 's', 'v', 'created_us', 'cms')
  local s = meta[1]
  local score, legacy = meta[3], nil
  if meta[4] and score then
    if not dry then redis.call('HDEL', key, 'cms') end
  elseif meta[4] then
    legacy = meta[4]
    score = legacy .. '000'
    report('migrated', batch_id, legacy, score)
    if not dry then migrate_score(key, batch_id, s, legacy) end
  end
  local gone = false
  if not s and named then
    s, score = 'pending', '+inf'
    drift(batch_id, 's', '', 'pending')
    if not dry then redis.call('HSET', key, 's', 'pending', 'v', 0) end
  elseif s and not named and tonumber(meta[2] or '0') == 0 then
    drift(batch_id, 's', s, '')
    gone = true
    if not dry then
      redis.call('DEL', key)
      redis.call('ZREM', BIDX, batch_id)
      for _, slot in pairs(BIDX_BY_STATUS) do redis.call('ZREM', KEYS[slot], batch_id) end
    end
    s = nil
  end
  if s then
    score = score or '+inf'
    local at = redis.call('ZSCORE', BIDX, batch_id)
    if not (same_score(at, score) or same_score(at, legacy)) then
      drift('index:' .. batch_id, 'all', at or '', score)
      if not dry then redis.call('ZADD', BIDX, score, batch_id) end
    end
    for status, slot in pairs(BIDX_BY_STATUS) do
      local listed = redis.call('ZSCORE', KEYS[slot], batch_id)
      if status == s and not listed then
        drift('index:' .. batch_id, status, 'absent', 'present')
        if not dry then redis.call('ZADD', KEYS[slot], score, batch_id) end
      elseif status == s and not (same_score(listed, score) or same_score(listed, legacy)) then
        drift('index:' .. batch_id, status, listed, score)
        if not dry then redis.call('ZADD', KEYS[slot], score, batch_id) end
      elseif status ~= s and listed then
        drift('index:' .. batch_id, status, 'present', 'absent')
        if not dry then redis.call('ZREM', KEYS[slot], batch_id) end
      end
    end
  end
  if not gone then reconcile_hash(key, batch_id, prefix, names, batch_counter) end
end
redis.call('PEXPIRE', SHADOW, ARGV[3])
if fixes > 0 and not dry then redis.call('HINCRBY', STATS, 'rev', 1) end
return out
"""
)

# RECOUNT_SERIES: some time-series hashes against the series the counted call records make.
#
# ARGV[3]     shadow expiry in ms
# ARGV[4..]   per hash: its index member (`m<hour>` | `q<day>`), the number k of shadow
#             fields named for it, then those k names (`<field>:<slot>`)
# Drift       per number: scope 'series:' .. member, field `<bucket field>:<slot>` (1-4 the
#             outcomes, 5 follow-up, 6 talk ms), found, expected; like a counter
RECOUNT_SERIES: Final = (
    _PRELUDE
    + _COUNT_BUCKETS
    + _COMPARE
    + """
local i = 4
while i <= #ARGV do
  local member, k = ARGV[i], tonumber(ARGV[i + 1])
  local kind, number = string.sub(member, 1, 1), tonumber(string.sub(member, 2))
  local key = TAG .. 't' .. kind .. ':' .. number
  local fields, seen = {}, {}
  for j = 1, k do
    local field = string.match(ARGV[i + 1 + j], '^(%d+):')
    if field and not seen[field] then
      seen[field] = true
      fields[#fields + 1] = field
    end
  end
  i = i + 2 + k
  local flat = redis.call('HGETALL', key)
  local found = {}
  for j = 1, #flat, 2 do
    found[flat[j]] = flat[j + 1]
    if not seen[flat[j]] then
      seen[flat[j]] = true
      fields[#fields + 1] = flat[j]
    end
  end
  local live = (number + 1) * SPAN[kind] + RETAIN[kind] > now_ms()
  for _, field in ipairs(fields) do
    local names = {}
    for slot = 1, 6 do names[slot] = 'S' .. member .. ':' .. field .. ':' .. slot end
    local want = redis.call('HMGET', SHADOW, unpack(names))
    local d = {0, 0, 0, 0, 0, 0}
    for slot = 1, 6 do d[slot] = live and tonumber(want[slot] or '0') or 0 end
    local have = unpack_series(found[field])
    local differs = false
    for slot = 1, 6 do
      if have[slot] ~= d[slot] then
        differs = true
        drift('series:' .. member, field .. ':' .. slot, have[slot], d[slot])
      elseif census and d[slot] ~= 0 then
        report('series:' .. member, field .. ':' .. slot, have[slot], d[slot])
      end
    end
    if differs and not dry then
      local expected = pack_series(d)
      if expected then
        redis.call('HSET', key, field, expected)
      else
        redis.call('HDEL', key, field)
      end
    end
  end
  if not dry and live and redis.call('EXISTS', key) == 1 then
    local expires = (number + 1) * SPAN[kind] + RETAIN[kind]
    redis.call('PEXPIREAT', key, string.format('%d', expires))
    redis.call('ZADD', SERIES_INDEX, string.format('%d', expires), member)
  end
end
redis.call('PEXPIRE', SHADOW, ARGV[3])
if fixes > 0 and not dry then redis.call('HINCRBY', STATS, 'rev', 1) end
return out
"""
)

# RECOUNT_END: the campaign's stats counters (after RECOUNT_BATCHES of every batch), and
# the end of the recount. `batches:<status>` should be the size of that status's index.
#
# ARGV[3]     number A of index adjustments, then A pairs: status, adjustment -- in a dry
#             run, what the RECOUNT_BATCHES calls would have changed in that status's index
#             (they changed nothing), so that index drift is not also counter drift
# then        the shadow's campaign-level field names (from the caller's scan)
RECOUNT_END: Final = (
    _PRELUDE
    + _COUNT_BUCKETS
    + _COMPARE
    + """
local function stats_counter(field)
  return field == 'contacts' or string.find(field, '^contacts:') or string.find(field, '^retry:')
    or string.find(field, '^calls:')
end
local adjust = {}
local na = tonumber(ARGV[3])
for i = 0, na - 1 do adjust[ARGV[4 + 2 * i]] = tonumber(ARGV[5 + 2 * i]) end
local names = {}
for i = 4 + 2 * na, #ARGV do names[#names + 1] = ARGV[i] end
reconcile_hash(STATS, 'stats', '', names, stats_counter)
local counts = redis.call('HGETALL', STATS)
local batches = {}
for j = 1, #counts, 2 do
  if string.find(counts[j], '^batches:') then batches[counts[j]] = counts[j + 1] end
end
for status, slot in pairs(BIDX_BY_STATUS) do
  local field = 'batches:' .. status
  local want, f = redis.call('ZCARD', KEYS[slot]) + (adjust[status] or 0), batches[field]
  batches[field] = nil
  if tonumber(f or '0') ~= want then
    drift('stats', field, f or 0, want)
    if not dry then
      if want == 0 then
        redis.call('HDEL', STATS, field)
      else
        redis.call('HSET', STATS, field, want)
      end
    end
  elseif census and f then
    report('stats', field, f, want)
  end
end
for field, f in pairs(batches) do  -- a status that does not exist
  drift('stats', field, f, 0)
  if not dry then redis.call('HDEL', STATS, field) end
end
redis.call('DEL', SHADOW)
if fixes > 0 and not dry then redis.call('HINCRBY', STATS, 'rev', 1) end
return out
"""
)


# BATCH_PAGE: one page of a batch index, each listed batch named by its content (read only).
#
# KEYS[1]     a batch index (`keys.batch_index`: all batches, or those of one status)
# ARGV[1..3]  first rank, last rank (ZRANGE), the prefix of the campaign's batch hashes
#             (`keys.batch(campaign, "")`: the same hash tag, so the same slot)
# Returns     id1, dump1, id2, dump2, ...: each batch hash's DUMP (binary: read without
#             decoding), which changes whenever the hash does; '' for a listed batch with
#             no hash. The API renders a batch once per DUMP (`api.pages.Fragments`); a
#             DUMP costs about a third of an HGETALL into Lua.
BATCH_PAGE: Final = """
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
local out = {}
for i, id in ipairs(ids) do
  out[2 * i - 1] = id
  out[2 * i] = redis.call('DUMP', ARGV[3] .. id) or ''
end
return out
"""

# BATCH_HASHES: some batch hashes with their DUMPs, each pair read at one instant.
#
# KEYS        the batch hashes (`keys.batch`), all of one campaign
# Returns     per key: its DUMP (as BATCH_PAGE) and its HGETALL pairs (a flat array): the
#             JSON rendered from the pairs is kept under the DUMP read with them.
BATCH_HASHES: Final = """
local out = {}
for i, key in ipairs(KEYS) do
  out[2 * i - 1] = redis.call('DUMP', key) or ''
  out[2 * i] = redis.call('HGETALL', key)
end
return out
"""

# BATCH_PROGRESS: a batch's hash and its contacts that became terminal in some minutes.
#
# KEYS[1]     the batch hash (`keys.batch`); KEYS[2] the layout (`keys.layout`); KEYS[3..]
#             progress hashes (`keys.progress`), all of one campaign
# ARGV[1]     the batch id; then per progress hash: how many minutes, and those minutes of
#             the hour
# Returns     {the batch hash's HGETALL pairs, contacts that became terminal in the minutes}
BATCH_PROGRESS: Final = """
local n = redis.call('HGET', KEYS[2], 'b:' .. ARGV[1])
local count, at = 0, 2
for k = 3, #KEYS do
  local minutes = tonumber(ARGV[at])
  if n and minutes > 0 then
    local fields = {}
    for j = 1, minutes do fields[j] = n .. ':' .. ARGV[at + j] end
    for _, value in ipairs(redis.call('HMGET', KEYS[k], unpack(fields))) do
      if value then count = count + tonumber(value) end
    end
  end
  at = at + minutes + 1
end
return {redis.call('HGETALL', KEYS[1]), count}
"""
