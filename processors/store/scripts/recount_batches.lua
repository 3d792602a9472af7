-- RECOUNT_BATCHES: batch metadata, indexes and counters of some batches.
--
-- KEYS        campaign_keys(campaign)
-- ARGV[1..2]  and Returns: see compare.lua
--
-- ARGV[3]     shadow expiry in ms
-- ARGV[4..]   per batch: its id, the number k of shadow fields named, then those k names
--             A batch with contacts but no state is known only from them (made pending);
--             one known only from contacts that none names any more is gone (reported as
--             its `s` found, '' expected), as APPLY_SLICE would have left it. A batch still
--             in a hash of its own is moved into `bt`; one of the millisecond layout
--             (`cms`) gets microsecond index scores (migrate_score) and is reported as
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
  local n = redis.call('HGET', LAYOUT, 'b:' .. batch_id)
  local prefix = (n or 'none') .. '>'
  local named = n and tonumber(redis.call('HGET', SHADOW, prefix .. 'known') or '0') > 0
  local t = batch_state(batch_id) or {}
  local s = t.s
  local score, legacy = t.created_us, nil
  if t.cms then  -- its index scores are rescaled when it is written (migrate_score)
    legacy = t.cms
    report('migrated', batch_id, legacy, score)
  end
  local gone = false
  if not s and named then
    s, score = 'pending', '+inf'
    drift(batch_id, 's', '', 'pending')
    if not dry then
      t = batch_state(batch_id) or new_batch(batch_id)
      t.s, t.v = 'pending', '0'
      batch_changed(batch_id)
    end
  elseif s and not named and tonumber(t.v or '0') == 0 then
    drift(batch_id, 's', s, '')
    gone = true
    if not dry then
      delete_batch(batch_id)
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
  if not gone then
    local flat, fields = {}, {}
    for field in pairs(t) do
      if batch_counter(field) then fields[#fields + 1] = field end
    end
    table.sort(fields)
    for _, field in ipairs(fields) do
      flat[#flat + 1] = field
      flat[#flat + 1] = integer(t[field])
    end
    reconcile_counters(flat, batch_id, prefix, names, batch_counter, function(field, e)
      local state = batch_state(batch_id) or new_batch(batch_id)
      state[field] = e ~= 0 and e or nil
      batch_changed(batch_id)
    end)
  end
end
if not dry then flush_batches() end
redis.call('PEXPIRE', SHADOW, ARGV[3])
if fixes > 0 and not dry then redis.call('HINCRBY', STATS, 'rev', 1) end
return out
