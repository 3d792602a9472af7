-- BATCH_HASHES: some batch hashes with their DUMPs, each pair read at one instant.
--
-- KEYS        the batch hashes (`keys.batch`), all of one campaign
-- Returns     per key: its DUMP (as BATCH_PAGE) and its HGETALL pairs (a flat array): the
--             JSON rendered from the pairs is kept under the DUMP read with them.
local out = {}
for i, key in ipairs(KEYS) do
  out[2 * i - 1] = redis.call('DUMP', key) or ''
  out[2 * i] = redis.call('HGETALL', key)
end
return out
