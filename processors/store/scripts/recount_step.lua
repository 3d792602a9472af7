-- RECOUNT_STEP   ARGV: token, budget (entities to read at most), shadow expiry in ms.
--                Returns 1 when every bucket is counted, 0 when more remain, -1 when the
--                recount is gone (expired or replaced: begin again).
--                KEYS: campaign_keys(campaign).
if redis.call('HGET', SHADOW, 'tok') ~= ARGV[1] then return -1 end
local done = count_buckets(tonumber(ARGV[2]))
redis.call('PEXPIRE', SHADOW, ARGV[3])
return done and 1 or 0
