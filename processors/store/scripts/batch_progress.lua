-- BATCH_PROGRESS: a batch's hash and its contacts that became terminal in some minutes.
--
-- KEYS[1]     the batch hash (`keys.batch`); KEYS[2] the layout (`keys.layout`); KEYS[3..]
--             progress hashes (`keys.progress`), all of one campaign
-- ARGV[1]     the batch id; then per progress hash: how many minutes, and those minutes of
--             the hour
-- Returns     {the batch hash's HGETALL pairs, contacts that became terminal in the minutes}
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
return {redis.call('HGETALL', KEYS[1]), count}
