-- MIGRATE_STATES: move one bucket of the fixed layout (plain ids) into the growing one.
--
-- KEYS        campaign_keys(campaign), then the old bucket
-- ARGV[1]     kind (c|r)
-- ARGV[2..]   triples: digest, old field (the id), state with the batch id (contacts)
-- Returns     number of states moved. A state the new layout holds in the same or a newer
--             version is kept (a worker of the new layout applied it); counters are left
--             alone -- a correcting recount follows (`Store.migrate_campaign`).
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
