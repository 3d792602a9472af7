-- BATCH_PAGE: one page of a batch index, each listed batch named by its content (read only).
--
-- KEYS[1]     a batch index (`keys.batch_index`: all batches, or those of one status)
-- ARGV[1..3]  first rank, last rank (ZRANGE), the prefix of the campaign's batch hashes
--             (`keys.batch(campaign, "")`: the same hash tag, so the same slot)
-- Returns     id1, dump1, id2, dump2, ...: each batch hash's DUMP (binary: read without
--             decoding), which changes whenever the hash does; '' for a listed batch with
--             no hash. The API renders a batch once per DUMP (`api.pages.Fragments`); a
--             DUMP costs about a third of an HGETALL into Lua.
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
local out = {}
for i, id in ipairs(ids) do
  out[2 * i - 1] = id
  out[2 * i] = redis.call('DUMP', ARGV[3] .. id) or ''
end
return out
