-- LOOKUP: the stored states of some entities, found where the layout has them now.
--
-- KEYS        campaign_keys(campaign)
-- ARGV        pairs: kind (c|r), digest
-- Returns     one packed state per pair, false when absent
local out = {}
for i = 1, #ARGV, 2 do
  local skey = locate(ARGV[i], hash_of(ARGV[i + 1]))
  out[#out + 1] = redis.call('HGET', skey, ARGV[i + 1])
end
return out
