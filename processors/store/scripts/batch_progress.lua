-- BATCH_PROGRESS: a batch's state and its contacts that became terminal in some minutes.
--
-- KEYS[1]     the batches hash (`keys.batches`); KEYS[2] the layout (`keys.layout`);
--             KEYS[3..] progress hashes (`keys.progress`), all of one campaign
-- ARGV[1]     the batch id; then per progress hash: how many minutes, and those minutes of
--             the hour
-- Returns     {the batch's packed state (batch_codec.lua) or '', contacts that became
--             terminal in the minutes}
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
return {packed_batch(KEYS[1], ARGV[1]) or '', count}
