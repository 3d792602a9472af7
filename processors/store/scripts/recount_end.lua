-- RECOUNT_END: the campaign's stats counters (after RECOUNT_BATCHES of every batch), and
--
-- KEYS        campaign_keys(campaign)
-- ARGV[1..2]  and Returns: see compare.lua
-- the end of the recount. `batches:<status>` should be the size of that status's index.
--
-- ARGV[3]     number A of index adjustments, then A pairs: status, adjustment -- in a dry
--             run, what the RECOUNT_BATCHES calls would have changed in that status's index
--             (they changed nothing), so that index drift is not also counter drift
-- then        the shadow's campaign-level field names (from the caller's scan)
local function stats_counter(field)
  return field == 'contacts' or string.find(field, '^contacts:') or string.find(field, '^retry:')
    or string.find(field, '^calls:')
end
local adjust = {}
local na = tonumber(ARGV[3])
for i = 0, na - 1 do adjust[ARGV[4 + 2 * i]] = tonumber(ARGV[5 + 2 * i]) end
local names = {}
for i = 4 + 2 * na, #ARGV do names[#names + 1] = ARGV[i] end
reconcile_counters(redis.call('HGETALL', STATS), 'stats', '', names, stats_counter,
  function(field, e)
    if e == 0 then redis.call('HDEL', STATS, field) else redis.call('HSET', STATS, field, e) end
  end)
local counts = redis.call('HGETALL', STATS)
local batches = {}
for j = 1, #counts, 2 do
  if string.find(counts[j], '^batches:') then batches[counts[j]] = counts[j + 1] end
end
for status, slot in pairs(BIDX_BY_STATUS) do
  local field = 'batches:' .. status
  local want, f = redis.call('ZCARD', KEYS[slot]) + (adjust[status] or 0), batches[field]
  batches[field] = nil
  if tonumber(f or '0') ~= want then
    drift('stats', field, f or 0, want)
    if not dry then
      if want == 0 then
        redis.call('HDEL', STATS, field)
      else
        redis.call('HSET', STATS, field, want)
      end
    end
  elseif census and f then
    report('stats', field, f, want)
  end
end
for field, f in pairs(batches) do  -- a status that does not exist
  drift('stats', field, f, 0)
  if not dry then redis.call('HDEL', STATS, field) end
end
redis.call('DEL', SHADOW)
if fixes > 0 and not dry then redis.call('HINCRBY', STATS, 'rev', 1) end
return out
