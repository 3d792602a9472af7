-- RECOUNT_BATCHES: batch metadata, indexes and counters of some batches.
--
-- KEYS        campaign_keys(campaign)
-- ARGV[1..2]  and Returns: see compare.lua
--
-- ARGV[3]     shadow expiry in ms
-- ARGV[4..]   per batch: its id, the number k of shadow fields named, then those k names
--             A batch with contacts but no hash is known only from them (made pending); one
--             known only from contacts that none names any more is gone (reported as its
--             `s` found, '' expected), as APPLY_SLICE would have left it. A batch hash of
--             the millisecond layout (`cms`) is rewritten (migrate_score) and reported as
--             ('migrated', batch id, cms, created_us), not as drift; a dry run reports it
--             alone and takes the index's millisecond score for a right one.
local function same_score(at, score)
  return at and score and (tostring(at) == tostring(score) or tonumber(at) == tonumber(score))
end
local function batch_counter(field)
  return field == 'known' or string.find(field, '^contacts:') or string.find(field, '^retry:')
end

local i = 4
while i <= #ARGV do
  local batch_id, k = ARGV[i], tonumber(ARGV[i + 1])
  local names = {}
  for j = 1, k do names[j] = ARGV[i + 1 + j] end
  i = i + 2 + k
  local key = BATCH_PREFIX .. batch_id
  local n = redis.call('HGET', LAYOUT, 'b:' .. batch_id)
  local prefix = (n or 'none') .. '>'
  local named = n and tonumber(redis.call('HGET', SHADOW, prefix .. 'known') or '0') > 0
  local meta = redis.call('HMGET', key, 's', 'v', 'created_us', 'cms')
  local s = meta[1]
  local score, legacy = meta[3], nil
  if meta[4] and score then
    if not dry then redis.call('HDEL', key, 'cms') end
  elseif meta[4] then
    legacy = meta[4]
    score = legacy .. '000'
    report('migrated', batch_id, legacy, score)
    if not dry then migrate_score(key, batch_id, s, legacy) end
  end
  local gone = false
  if not s and named then
    s, score = 'pending', '+inf'
    drift(batch_id, 's', '', 'pending')
    if not dry then redis.call('HSET', key, 's', 'pending', 'v', 0) end
  elseif s and not named and tonumber(meta[2] or '0') == 0 then
    drift(batch_id, 's', s, '')
    gone = true
    if not dry then
      redis.call('DEL', key)
      redis.call('ZREM', BIDX, batch_id)
      for _, slot in pairs(BIDX_BY_STATUS) do redis.call('ZREM', KEYS[slot], batch_id) end
    end
    s = nil
  end
  if s then
    score = score or '+inf'
    local at = redis.call('ZSCORE', BIDX, batch_id)
    if not (same_score(at, score) or same_score(at, legacy)) then
      drift('index:' .. batch_id, 'all', at or '', score)
      if not dry then redis.call('ZADD', BIDX, score, batch_id) end
    end
    for status, slot in pairs(BIDX_BY_STATUS) do
      local listed = redis.call('ZSCORE', KEYS[slot], batch_id)
      if status == s and not listed then
        drift('index:' .. batch_id, status, 'absent', 'present')
        if not dry then redis.call('ZADD', KEYS[slot], score, batch_id) end
      elseif status == s and not (same_score(listed, score) or same_score(listed, legacy)) then
        drift('index:' .. batch_id, status, listed, score)
        if not dry then redis.call('ZADD', KEYS[slot], score, batch_id) end
      elseif status ~= s and listed then
        drift('index:' .. batch_id, status, 'present', 'absent')
        if not dry then redis.call('ZREM', KEYS[slot], batch_id) end
      end
    end
  end
  if not gone then reconcile_hash(key, batch_id, prefix, names, batch_counter) end
end
redis.call('PEXPIRE', SHADOW, ARGV[3])
if fixes > 0 and not dry then redis.call('HINCRBY', STATS, 'rev', 1) end
return out
