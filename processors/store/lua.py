"""Every Lua script dialer-stats runs, each with its KEYS / ARGV / return contract.

Scripts never build key names but one: every key arrives in KEYS (see `keys`), so they run
unchanged on Redis Cluster, where all keys of one call share the `{campaign_id}` hash tag.
The exception is the batch a contact moves away from: only the stored state names it, so
APPLY_SLICE gets the batch hash prefix of the campaign (`keys.batch(campaign, "")`) and
appends the batch id -- the same hash tag, so the same slot. All three scripts share one
fixed KEYS prefix (`campaign_keys`) and one prelude of helpers, so a transition is written
once.
"""

from __future__ import annotations

from typing import Final

from processors.domain.contract import BATCH_STATUSES, CALL_STATUSES, CONTACT_STATUSES
from processors.store import keys

#: One-letter codes that pack entity state compactly; position in the status tuple.
CONTACT_CODES: Final = {s: chr(ord("a") + i) for i, s in enumerate(CONTACT_STATUSES)}
CALL_CODES: Final = {s: chr(ord("a") + i) for i, s in enumerate(CALL_STATUSES)}
CONTACT_BY_CODE: Final = {c: s for s, c in CONTACT_CODES.items()}
CALL_BY_CODE: Final = {c: s for s, c in CALL_CODES.items()}

#: Fixed KEYS prefix of every script; entity keys follow from index FIRST_ENTITY_KEY (1-based).
FIXED_KEYS: Final = 3 + len(BATCH_STATUSES)
FIRST_ENTITY_KEY: Final = FIXED_KEYS + 1
FIELDS_PER_EVENT: Final = 13

#: Separators of the APPLY_SLICE payload (ids and statuses never contain them).
EVENT_SEP: Final = "\x1e"
FIELD_SEP: Final = "\x1f"

#: Outcome codes returned per event by APPLY_SLICE (stable: the worker and the stats
#: hash's `events:*` tallies name them).
APPLIED, REPLAYED, STALE, TENANT_MISMATCH = range(4)


def campaign_keys(campaign_id: str) -> list[str]:
    """KEYS[1..FIXED_KEYS] of every script: stats, fence, batch index, per-status indexes."""
    fixed = [keys.stats(campaign_id), keys.fence(campaign_id), keys.batch_index(campaign_id)]
    fixed.extend(keys.batch_index(campaign_id, status) for status in BATCH_STATUSES)
    return fixed


def _lua_table(mapping: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}='{v}'" for k, v in mapping.items()) + "}"


_BATCH_INDEX_SLOTS = "{" + ", ".join(f"{s}={4 + i}" for i, s in enumerate(BATCH_STATUSES)) + "}"

# Shared by every script: key layout, status tables and the exact counter transitions.
_PRELUDE: Final = (
    """
local STATS, FENCE, BIDX = KEYS[1], KEYS[2], KEYS[3]
local unpack = unpack or table.unpack
local BIDX_BY_STATUS = """
    + _BATCH_INDEX_SLOTS
    + """
local CONTACT = """
    + _lua_table(CONTACT_BY_CODE)
    + """
local CALL = """
    + _lua_table(CALL_BY_CODE)
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

local function contact_delta(bkey, code, retry, by)
  local name = CONTACT[code]
  bump(STATS, 'contacts:' .. name, by)
  bump(bkey, 'contacts:' .. name, by)
  if name == 'retrying' then
    bump(STATS, 'retry:' .. retry, by)
    bump(bkey, 'retry:' .. retry, by)
  end
end

local function record_delta(code, follow_up, by)
  bump(STATS, 'calls:' .. CALL[code], by)
  if follow_up == '1' then bump(STATS, 'calls:follow_up', by) end
end

local function parse_contact(packed)
  return string.match(packed, '^(%d+)|(%a)|(%d+)|(.*)$')
end

local function parse_record(packed)
  return string.match(packed, '^(%d+)|(%a)|(%d)$')
end
"""
)

# APPLY_SLICE: apply the events of one campaign from one fetched batch, atomically.
#
# KEYS        campaign_keys(campaign), then entity keys (batch hashes, state buckets)
# ARGV[1]     F, the number of partitions the events come from; 0 = repair mode (no
#             fence, no tallies: entity states re-applied by reconciliation)
# ARGV[2..]   F fence fields (topic:partition), then their F log epochs
# ARGV[2+2F]  the campaign's batch hash prefix: + batch id = the hash of a batch a contact
#             moves away from (its id is only in the stored state, not in the events)
# ARGV[3+2F]  the events, separated by RS (\30); each is FIELDS_PER_EVENT fields separated
#             by US (\31), in offset order per partition:
#             fence number (1..F, 0 in repair mode), offset, organization_id, version,
#             kind (b|c|r), entity id, state key index, batch key index (contacts),
#             status code or name, number (total_contacts | retry_count | follow-up flag),
#             extra (batch: created_at ISO; contact: batch_id), score (batch: created_at in
#             microseconds since the epoch), occurred_at ms
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
# Contact state: `version|status code|retry_count|batch_id`. A newer version naming another
# batch moves the contact: its status and retry bucket, and `known`, leave the old batch's
# counters and join the new one's.
APPLY_SLICE: Final = (
    _PRELUDE
    + """
local nf = tonumber(ARGV[1])
local repair = nf == 0
local BATCH_PREFIX = ARGV[2 + 2 * nf]
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

local function apply_batch(bkey, batch_id, ver, ver_s, status, total, created_at, score)
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

local function join_batch(bkey, batch_id)
  ensure_batch(bkey, batch_id)
  bump(bkey, 'known', 1)
end

local function apply_contact(skey, bkey, contact_id, ver, ver_s, code, retry, batch_id)
  local cur = redis.call('HGET', skey, contact_id)
  if cur then
    local v, c, r, b = parse_contact(cur)
    if ver <= tonumber(v) then return 2 end
    if b == batch_id then
      contact_delta(bkey, c, r, -1)
    else
      local old = BATCH_PREFIX .. b
      contact_delta(old, c, r, -1)
      bump(old, 'known', -1)
      left[b] = old
      join_batch(bkey, batch_id)
    end
  else
    join_batch(bkey, batch_id)
    bump(STATS, 'contacts', 1)
  end
  redis.call('HSET', skey, contact_id, ver_s .. '|' .. code .. '|' .. retry .. '|' .. batch_id)
  contact_delta(bkey, code, retry, 1)
  return 0
end

local function apply_record(skey, execution_id, ver, ver_s, code, follow_up)
  local cur = redis.call('HGET', skey, execution_id)
  if cur then
    local v, c, f = parse_record(cur)
    if ver <= tonumber(v) then return 2 end
    record_delta(c, f, -1)
  end
  redis.call('HSET', skey, execution_id, ver_s .. '|' .. code .. '|' .. follow_up)
  record_delta(code, follow_up, 1)
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
local tally = {0, 0, 0, 0}
local last_event_ms = 0
local n = 0

for rec in string.gmatch(ARGV[3 + 2 * nf], '[^\\30]+') do
  n = n + 1
  local fence, offset_s, event_org, ver_s, kind, id, skey, bkey, status, num, extra, score,
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
      code = apply_batch(KEYS[tonumber(skey)], id, ver, ver_s, status, num, extra, score)
    elseif kind == 'c' then
      code = apply_contact(KEYS[tonumber(skey)], KEYS[tonumber(bkey)], id, ver, ver_s, status,
        num, extra)
    else
      code = apply_record(KEYS[tonumber(skey)], id, ver, ver_s, status, num)
    end
    counted = code
    local occurred_ms = tonumber(occurred_s)
    if code == 0 and occurred_ms > last_event_ms then last_event_ms = occurred_ms end
  end
  tally[counted + 1] = tally[counted + 1] + 1
  out[n] = code
end

flush_bumps()
for batch_id, bkey in pairs(left) do drop_if_unnamed(bkey, batch_id) end
flush_bumps()
if not repair then
  for i = 1, nf do
    if fence_max[i] > fence_at[i] then
      redis.call('HSET', FENCE, fence_field[i],
        fence_epoch[i] .. ':' .. string.format('%d', fence_max[i]))
    end
  end
  local names = {'applied', 'replayed', 'stale', 'tenant_mismatch'}
  for k = 1, 4 do
    if tally[k] > 0 then redis.call('HINCRBY', STATS, 'events:' .. names[k], tally[k]) end
  end
end
if tally[1] > 0 then
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

# REMOVE_ENTITIES: forget entities the source does not have, with their counter deltas --
# only while the worker has applied nothing at or beyond the offsets the source was read to.
#
# KEYS        campaign_keys(campaign), then entity keys
# ARGV[1]     number P of partition ends that follow
# ARGV[2..]   P pairs: fence field (topic:partition), end offset read by the source
# then        triples: kind (b|c|r), entity id, state key index (batches: their hash;
#             contacts: the bucket, then their batch's hash at the next index)
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
for i = 2 + 2 * p, #ARGV, 3 do
  local kind, id, key = ARGV[i], ARGV[i + 1], KEYS[tonumber(ARGV[i + 2])]
  if kind == 'c' then
    local cur = redis.call('HGET', key, id)
    if cur then
      local v, c, r, b = parse_contact(cur)
      redis.call('HDEL', key, id)
      removed = removed + 1
      bump(STATS, 'contacts', -1)
      -- the batch hash is passed right after the bucket
      local bkey = KEYS[tonumber(ARGV[i + 2]) + 1]
      bump(bkey, 'known', -1)
      contact_delta(bkey, c, r, -1)
      left[b] = bkey
    end
  elseif kind == 'r' then
    local cur = redis.call('HGET', key, id)
    if cur then
      local v, c, f = parse_record(cur)
      redis.call('HDEL', key, id)
      removed = removed + 1
      record_delta(c, f, -1)
    end
  else
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
flush_bumps()
for batch_id, bkey in pairs(left) do drop_if_unnamed(bkey, batch_id) end
flush_bumps()
if removed > 0 then redis.call('HINCRBY', STATS, 'rev', 1) end
return removed
"""
)

# RECOUNT: recount every counter of a campaign from its entity state and correct the drift,
# atomically (the worker's updates serialise before or after it).
#
# KEYS        campaign_keys(campaign), then B batch hashes, C contact buckets, R record buckets
# ARGV[1]     '0' correct, '1' dry run (report only); '2' and '3' the same, and report
#             every counter of the stats and of the batches passed, equal or not (a census:
#             counters and the state they should follow, read at one atomic cut)
# ARGV[2..4]  B, C, R
# ARGV[5..]   the B batch ids, in KEYS order
# Returns     {status, drift...}: status 0 done, 1 a contact names a batch not passed (nothing
#             changed; call again with it); drift as flat quadruples
#             scope ('stats' | batch id | 'index:' .. batch id), field, found, expected.
#             A counter missing from its hash is found 0 (a census leaves out counters
#             absent and expected 0).
#             A batch known only from contacts that no contact names is deleted (reported
#             as its `s` found, '' expected), as APPLY_SLICE would have left it. A batch
#             hash of the millisecond layout (`cms`) is rewritten (migrate_score) and
#             reported as ('migrated', batch id, cms, created_us), not as drift; a dry run
#             reports it alone and takes the index's millisecond score for a right one.
RECOUNT: Final = (
    _PRELUDE
    + """
local dry = ARGV[1] == '1' or ARGV[1] == '3'
local census = ARGV[1] == '2' or ARGV[1] == '3'
local nb, nc, nr = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local first_batch = """
    + str(FIXED_KEYS + 1)
    + """
local expected, per_batch, batch_key = {}, {}, {}
for i = 1, nb do
  per_batch[ARGV[4 + i]] = {}
  batch_key[ARGV[4 + i]] = KEYS[first_batch + i - 1]
end
local function inc(t, f) t[f] = (t[f] or 0) + 1 end

local first_contact = first_batch + nb
for k = first_contact, first_contact + nc - 1 do
  local flat = redis.call('HGETALL', KEYS[k])
  for j = 1, #flat, 2 do
    local v, c, r, b = parse_contact(flat[j + 1])
    local name = CONTACT[c]
    local mine = per_batch[b]
    if not mine then return {1} end
    inc(expected, 'contacts')
    inc(expected, 'contacts:' .. name)
    inc(mine, 'known')
    inc(mine, 'contacts:' .. name)
    if name == 'retrying' then
      inc(expected, 'retry:' .. r)
      inc(mine, 'retry:' .. r)
    end
  end
end
for k = first_contact + nc, first_contact + nc + nr - 1 do
  local flat = redis.call('HGETALL', KEYS[k])
  for j = 1, #flat, 2 do
    local v, c, f = parse_record(flat[j + 1])
    inc(expected, 'calls:' .. CALL[c])
    if f == '1' then inc(expected, 'calls:follow_up') end
  end
end

local out = {0}
local fixes = 0
local function report(scope, field, found, want)
  out[#out + 1] = scope
  out[#out + 1] = field
  out[#out + 1] = tostring(found)
  out[#out + 1] = tostring(want)
end
local function drift(scope, field, found, want)
  fixes = fixes + 1
  report(scope, field, found, want)
end

local function same_score(at, score)
  return at and score and (tostring(at) == tostring(score) or tonumber(at) == tonumber(score))
end

local function drop_batch(batch_id, key, s)
  drift(batch_id, 's', s, '')
  batch_key[batch_id] = nil
  if dry then return end
  redis.call('DEL', key)
  redis.call('ZREM', BIDX, batch_id)
  for _, slot in pairs(BIDX_BY_STATUS) do redis.call('ZREM', KEYS[slot], batch_id) end
end

-- batch metadata and indexes; a batch with contacts but no hash is known only from them,
-- and one known only from contacts that none names any more is gone
for batch_id, key in pairs(batch_key) do
  local meta = redis.call('HMGET', key, 's', 'v', 'created_us', 'cms')
  local s = meta[1]
  local score, legacy = meta[3], nil
  if meta[4] and score then
    if not dry then redis.call('HDEL', key, 'cms') end
  elseif meta[4] then
    legacy = meta[4]
    score = legacy .. '000'
    drift('migrated', batch_id, legacy, score)
    if not dry then migrate_score(key, batch_id, s, legacy) end
  end
  local named = next(per_batch[batch_id]) ~= nil
  if not s and named then
    s, score = 'pending', '+inf'
    drift(batch_id, 's', '', 'pending')
    if not dry then redis.call('HSET', key, 's', 'pending', 'v', 0) end
  elseif s and not named and tonumber(meta[2] or '0') == 0 then
    drop_batch(batch_id, key, s)
    s = nil
  end
  if s then
    inc(expected, 'batches:' .. s)
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
end

local function reconcile_hash(key, scope, want, is_counter)
  local flat = redis.call('HGETALL', key)
  local seen = {}
  for j = 1, #flat, 2 do
    local field = flat[j]
    if is_counter(field) then
      seen[field] = true
      local e = want[field] or 0
      if tonumber(flat[j + 1]) ~= e then
        drift(scope, field, flat[j + 1], e)
        if not dry then
          if e == 0 then redis.call('HDEL', key, field) else redis.call('HSET', key, field, e) end
        end
      elseif census then
        report(scope, field, flat[j + 1], e)
      end
    end
  end
  for field, e in pairs(want) do
    if not seen[field] and e ~= 0 then
      drift(scope, field, 0, e)
      if not dry then redis.call('HSET', key, field, e) end
    end
  end
end

local function stats_counter(field)
  return field == 'contacts' or string.find(field, '^contacts:') or string.find(field, '^retry:')
    or string.find(field, '^calls:') or string.find(field, '^batches:')
end
local function batch_counter(field)
  return field == 'known' or string.find(field, '^contacts:') or string.find(field, '^retry:')
end

reconcile_hash(STATS, 'stats', expected, stats_counter)
for batch_id, key in pairs(batch_key) do
  reconcile_hash(key, batch_id, per_batch[batch_id], batch_counter)
end
if fixes > 0 and not dry then redis.call('HINCRBY', STATS, 'rev', 1) end
return out
"""
)
