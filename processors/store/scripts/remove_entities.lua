-- REMOVE_ENTITIES: forget entities the source does not have, with their counter deltas --
-- only while the worker has applied nothing at or beyond the offsets the source was read to.
--
-- KEYS        campaign_keys(campaign)
-- ARGV[1]     number P of partition ends that follow
-- ARGV[2..]   P pairs: fence field (topic:partition), end offset read by the source
-- then        pairs: kind (b|c|r), entity (batch id, or the digest of a contact / record)
-- Returns     number of entities removed, or -1 when the worker is ahead (nothing changed).
--             A batch known only from contacts goes with the last contact that named it.
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
        if minute then progress_delta(bn, minute, -1) end
        tally('contacts', -1, mirror)
        batch_tally(batch_id, bn, 'known', -1, mirror)
        contact_delta(bn, batch_id, c, r, -1, mirror)
        left[batch_id] = true
      else
        local v, c, f, m, d = parse_record(cur)
        record_delta(c, f, -1, mirror)
        series_delta(c, f, m, d, -1, mirror)
      end
      resize(kind, t, -1)
    end
  else
    local t = batch_state(id)
    local s = t and t.s
    if s then
      bump(STATS, 'batches:' .. s, -1)
      delete_batch(id)
      redis.call('ZREM', BIDX, id)
      redis.call('ZREM', KEYS[BIDX_BY_STATUS[s]], id)
      removed = removed + 1
    end
  end
end
write_all(left)
if removed > 0 then redis.call('HINCRBY', STATS, 'rev', 1) end
return removed
