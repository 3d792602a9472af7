-- BATCH_STATES: the states of some batches of one campaign (read only).
--
-- KEYS[1]     the campaign's batches hash (`keys.batches`)
-- ARGV        batch ids
-- Returns     per batch its packed state (batch_codec.lua), '' for none: read from `bt`,
--             or from the batch's own hash where it is not moved yet
local out = {}
for i, id in ipairs(ARGV) do
  out[i] = packed_batch(KEYS[1], id) or ''
end
return out
