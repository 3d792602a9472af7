-- Shared by RECOUNT_STEP and the comparing recounts: counting whole buckets into the shadow.
-- Count buckets from the cursors on, contacts first, until `budget` entities were read;
-- true when every bucket is counted.
local function count_buckets(budget)
  local seen = 0
  for _, kind in ipairs({'c', 'r'}) do
    local t = layout(kind)
    local cursor = tonumber(redis.call('HGET', SHADOW, kind))
    local total = t.size + t.P
    while cursor < total and seen < budget do
      local flat = redis.call('HGETALL', BUCKET_PREFIX[kind] .. cursor)
      for j = 2, #flat, 2 do count_entry(kind, flat[j], 1) end
      seen = seen + #flat / 2 + 1
      cursor = cursor + 1
    end
    flush_bumps()
    redis.call('HSET', SHADOW, kind, cursor)
    if cursor < total then return false end
  end
  return true
end
