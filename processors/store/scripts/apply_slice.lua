-- APPLY_SLICE: apply the events of one campaign from one fetched batch, atomically.
--
-- KEYS        campaign_keys(campaign)
-- ARGV[1]     F, the number of partitions the events come from; 0 = repair mode (no
--             fence, no tallies: entity states re-applied by reconciliation)
-- ARGV[2..]   F fence fields (topic:partition), then their F log epochs
-- ARGV[2+2F]  the events, separated by RS (\30); each is FIELDS_PER_EVENT fields separated
--             by US (\31), in offset order per partition:
--             fence number (1..F, 0 in repair mode), offset, organization_id, version,
--             kind (b|c|r), entity (batch: its id; contact, record: keys.digest of the id),
--             keys.bucket_hash of the digest (contacts, records), status code or name,
--             number (total_contacts | retry_count | follow-up flag), extra (batch:
--             empty; contact: batch_id; record: duration in ms), score (batch:
--             created_at in microseconds since the epoch), occurred_at ms
-- Returns     one outcome code per event: 0 applied, 1 replayed (at or below the fence),
--             2 stale or duplicate version, 3 tenant mismatch -- also for a replayed event:
--             the owner never changes once set, so the verdict is the same on a retry and
--             a dead letter lost in a crash is sent again.
-- Tallies     `events:<outcome>` in the stats hash, by the outcome of each offset's first
--             delivery: a replay counts as `events:replayed` only, whatever code it returns.
--
-- Batch state (batch_codec.lua): `s` status, `v` version (0: known only from contacts),
-- `total`, `created_us` (created_at, the index score), `known` contacts, counters. A batch
-- this call reads from a hash of its own is moved into `bt` (with a hash of the
-- millisecond layout, `cms`, its index scores: see migrate_score).
-- A newer contact version naming another batch moves the contact: its status and retry
-- bucket, and `known`, leave the old batch's counters and join the new one's.
local nf = tonumber(ARGV[1])
local repair = nf == 0
-- one event at a position: its fields, its RS (none after the last event) and where the
-- next one starts; one anchored find per event, instead of splitting the events apart first
local EVENT = '^' .. string.rep('([^\31\30]*)\31', FIELDS_PER_EVENT - 1) .. '([^\31\30]*)(\30?)()'

local function ensure_batch(batch_id)
  local t = batch_state(batch_id) or new_batch(batch_id)
  if not t.s then
    t.s, t.v = 'pending', '0'
    batch_changed(batch_id)
    bump(STATS, 'batches:pending', 1)
    redis.call('ZADD', BIDX, '+inf', batch_id)
    redis.call('ZADD', KEYS[BIDX_BY_STATUS['pending']], '+inf', batch_id)
  end
end

local function apply_batch(batch_id, ver, ver_s, status, total, score)
  local t = batch_state(batch_id)
  if t and t.s then
    if ver <= tonumber(t.v) then return 2 end
    bump(STATS, 'batches:' .. t.s, -1)
    redis.call('ZREM', KEYS[BIDX_BY_STATUS[t.s]], batch_id)
  end
  t = t or new_batch(batch_id)
  t.s, t.v, t.total, t.created_us = status, ver_s, total, score
  batch_changed(batch_id)
  bump(STATS, 'batches:' .. status, 1)
  redis.call('ZADD', BIDX, score, batch_id)
  redis.call('ZADD', KEYS[BIDX_BY_STATUS[status]], score, batch_id)
  return 0
end

-- batches a contact left in this call (id -> true): dropped at the end if nothing names
-- them any more
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
  local bn = batch_number(batch_id)
  if cur then
    if old_bn == bn then
      contact_delta(bn, batch_id, c, r, -1, mirror)
    else
      local old_id = batch_id_of(old_bn)
      contact_delta(old_bn, old_id, c, r, -1, mirror)
      batch_tally(old_id, old_bn, 'known', -1, mirror)
      left[old_id] = true
      ensure_batch(batch_id)
      batch_tally(batch_id, bn, 'known', 1, mirror)
    end
  else
    ensure_batch(batch_id)
    batch_tally(batch_id, bn, 'known', 1, mirror)
    tally('contacts', 1, mirror)
  end
  local packed = ver_s .. '|' .. code .. '|' .. retry .. '|' .. bn
  if TERMINAL[code] then
    local minute = math.floor(tonumber(occurred_s) / 60000)
    packed = packed .. '|' .. base36_minute(minute)
    progress_delta(bn, minute, 1)
  end
  redis.call('HSET', skey, digest, packed)
  contact_delta(bn, batch_id, code, retry, 1, mirror)
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
    ver_s .. '|' .. code .. '|' .. follow_up .. '|' .. base36_minute(minute) .. '|' .. base36(talk))
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

local events = ARGV[2 + 2 * nf]
local at, size = 1, #events
while at <= size do
  n = n + 1
  local _, _, fence, offset_s, event_org, ver_s, kind, id, h, status, num, extra, score,
    occurred_s, rs, next_at = string.find(events, EVENT, at)
  -- an event of other than FIELDS_PER_EVENT fields fails before anything of it is written
  if not next_at or (rs == '' and next_at <= size) then
    error('APPLY_SLICE: malformed event at byte ' .. at)
  end
  at = next_at
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
      code = apply_batch(id, ver, ver_s, status, num, score)
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

write_all(left)
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
