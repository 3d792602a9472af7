"""Every Lua script dialer-stats runs, each with its KEYS / ARGV / return contract.

Scripts never build key names: every key arrives in KEYS (see `keys`), so they run unchanged
on Redis Cluster, where all keys of one call share the `{campaign_id}` hash tag.
"""

from __future__ import annotations

from typing import Final

from processors.events import BATCH_STATUSES, CALL_STATUSES, CONTACT_STATUSES

#: One-letter codes that pack entity state compactly; position in the status tuple.
CONTACT_CODES: Final = {s: chr(ord("a") + i) for i, s in enumerate(CONTACT_STATUSES)}
CALL_CODES: Final = {s: chr(ord("a") + i) for i, s in enumerate(CALL_STATUSES)}
CONTACT_BY_CODE: Final = {c: s for s, c in CONTACT_CODES.items()}
CALL_BY_CODE: Final = {c: s for s, c in CALL_CODES.items()}

#: Fixed KEYS prefix of APPLY_SLICE; entity keys follow from index FIRST_ENTITY_KEY (1-based).
FIXED_KEYS: Final = 3 + len(BATCH_STATUSES)
FIRST_ENTITY_KEY: Final = FIXED_KEYS + 1
FIELDS_PER_EVENT: Final = 12

#: Outcome codes returned per event by APPLY_SLICE.
APPLIED, REPLAYED, STALE, TENANT_MISMATCH, BATCH_MISMATCH = range(5)


def _lua_table(mapping: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}='{v}'" for k, v in mapping.items()) + "}"


_BATCH_INDEX_SLOTS = "{" + ", ".join(f"{s}={4 + i}" for i, s in enumerate(BATCH_STATUSES)) + "}"

# APPLY_SLICE: apply the events of one campaign read from one topic partition, atomically.
#
# KEYS[1]     stats hash            {cmp}:stats
# KEYS[2]     fence hash            {cmp}:fence
# KEYS[3]     batch index (all)     {cmp}:bi
# KEYS[4..9]  batch index per status, in BATCH_STATUSES order
# KEYS[10..]  entity keys (batch hashes, contact and call-record state buckets)
# ARGV[1]     fence field (topic:partition)
# ARGV[2]     log epoch of that partition
# ARGV[3..]   FIELDS_PER_EVENT values per event, in offset order:
#             kind (b|c|r), offset, organization_id, version, entity id,
#             state key index, batch key index (contacts), status code or name,
#             number (total_contacts | retry_count | follow-up flag),
#             extra (batch: created_at ISO or ''; contact: batch_id; record: ''),
#             score (batch: created_at ms, '+inf' without one; others ''),
#             occurred_at ms
# Returns     one outcome code per event: 0 applied, 1 replayed (at or below the fence),
#             2 stale or duplicate version, 3 tenant mismatch, 4 contact named another batch.
APPLY_SLICE: Final = (
    """
local STATS, FENCE, BIDX = KEYS[1], KEYS[2], KEYS[3]
local BIDX_BY_STATUS = """
    + _BATCH_INDEX_SLOTS
    + """
local CONTACT = """
    + _lua_table(CONTACT_BY_CODE)
    + """
local CALL = """
    + _lua_table(CALL_BY_CODE)
    + """
local N = """
    + str(FIELDS_PER_EVENT)
    + """
local fence_field, epoch = ARGV[1], ARGV[2]

local function bump(key, field, by)
  if redis.call('HINCRBY', key, field, by) == 0 then redis.call('HDEL', key, field) end
end

local function ensure_batch(bkey, batch_id)
  if redis.call('HSETNX', bkey, 's', 'pending') == 1 then
    redis.call('HSET', bkey, 'v', 0)
    bump(STATS, 'batches:pending', 1)
    redis.call('ZADD', BIDX, '+inf', batch_id)
    redis.call('ZADD', KEYS[BIDX_BY_STATUS['pending']], '+inf', batch_id)
  end
end

local function apply_batch(bkey, batch_id, ver, ver_s, status, total, created_at, score)
  local cur = redis.call('HMGET', bkey, 's', 'v')
  if cur[1] then
    if ver <= tonumber(cur[2]) then return 2 end
    bump(STATS, 'batches:' .. cur[1], -1)
    redis.call('ZREM', KEYS[BIDX_BY_STATUS[cur[1]]], batch_id)
  end
  redis.call('HSET', bkey, 's', status, 'v', ver_s, 'total', total, 'created_at', created_at)
  bump(STATS, 'batches:' .. status, 1)
  redis.call('ZADD', BIDX, score, batch_id)
  redis.call('ZADD', KEYS[BIDX_BY_STATUS[status]], score, batch_id)
  return 0
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

local function apply_contact(skey, bkey, contact_id, ver, ver_s, code, retry, batch_id)
  local cur = redis.call('HGET', skey, contact_id)
  if cur then
    local v, c, r, b = string.match(cur, '^(%d+)|(%a)|(%d+)|(.*)$')
    if b ~= batch_id then return 4 end
    if ver <= tonumber(v) then return 2 end
    contact_delta(bkey, c, r, -1)
  else
    ensure_batch(bkey, batch_id)
    bump(bkey, 'known', 1)
    bump(STATS, 'contacts', 1)
  end
  redis.call('HSET', skey, contact_id, ver_s .. '|' .. code .. '|' .. retry .. '|' .. batch_id)
  contact_delta(bkey, code, retry, 1)
  return 0
end

local function record_delta(code, follow_up, by)
  bump(STATS, 'calls:' .. CALL[code], by)
  if follow_up == '1' then bump(STATS, 'calls:follow_up', by) end
end

local function apply_record(skey, execution_id, ver, ver_s, code, follow_up)
  local cur = redis.call('HGET', skey, execution_id)
  if cur then
    local v, c, f = string.match(cur, '^(%d+)|(%a)|(%d)$')
    if ver <= tonumber(v) then return 2 end
    record_delta(c, f, -1)
  end
  redis.call('HSET', skey, execution_id, ver_s .. '|' .. code .. '|' .. follow_up)
  record_delta(code, follow_up, 1)
  return 0
end

local fence_offset = -1
local stored = redis.call('HGET', FENCE, fence_field)
if stored then
  local e, o = string.match(stored, '^(.*):(%-?%d+)$')
  if e == epoch then fence_offset = tonumber(o) end
end
local max_offset = fence_offset
local org = redis.call('HGET', STATS, 'org')
local out = {}
local tally = {0, 0, 0, 0, 0}
local last_event_ms = 0

for i = 0, (#ARGV - 2) / N - 1 do
  local a = 2 + i * N
  local kind, offset, event_org = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3]
  local ver_s, id = ARGV[a + 4], ARGV[a + 5]
  local ver = tonumber(ver_s)
  local skey, bkey = KEYS[tonumber(ARGV[a + 6])], KEYS[tonumber(ARGV[a + 7])]
  local status, num, extra, score = ARGV[a + 8], ARGV[a + 9], ARGV[a + 10], ARGV[a + 11]
  local occurred_ms = tonumber(ARGV[a + 12])
  local code
  if offset <= fence_offset then
    code = 1
  else
    if offset > max_offset then max_offset = offset end
    if not org then
      org = event_org
      redis.call('HSET', STATS, 'org', org)
    end
    if event_org ~= org then
      code = 3
    elseif kind == 'b' then
      code = apply_batch(skey, id, ver, ver_s, status, num, extra, score)
    elseif kind == 'c' then
      code = apply_contact(skey, bkey, id, ver, ver_s, status, num, extra)
    else
      code = apply_record(skey, id, ver, ver_s, status, num)
    end
    if code == 0 and occurred_ms > last_event_ms then last_event_ms = occurred_ms end
  end
  tally[code + 1] = tally[code + 1] + 1
  out[i + 1] = code
end

if max_offset > fence_offset then
  redis.call('HSET', FENCE, fence_field, epoch .. ':' .. string.format('%d', max_offset))
end
local names = {'applied', 'replayed', 'stale', 'tenant_mismatch', 'batch_mismatch'}
for k = 1, 5 do
  if tally[k] > 0 then redis.call('HINCRBY', STATS, 'events:' .. names[k], tally[k]) end
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
