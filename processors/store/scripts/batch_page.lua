-- BATCH_PAGE: one page of a batch index, with each listed batch's state (read only).
--
-- KEYS[1]     a batch index (`keys.batch_index`: all batches, or those of one status)
-- KEYS[2]     the campaign's batches hash (`keys.batches`)
-- ARGV[1..2]  first rank, last rank (ZRANGE)
-- Returns     id1, state1, id2, state2, ...: each batch's packed state (batch_codec.lua),
--             which changes whenever the batch does; '' for a listed batch with none. The
--             API renders a batch once per state (`api.pages.Fragments`).
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
local out = {}
for i, id in ipairs(ids) do
  out[2 * i - 1] = id
  out[2 * i] = packed_batch(KEYS[2], id) or ''
end
return out
