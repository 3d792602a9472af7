-- RECOUNT_SERIES: some time-series hashes against the series the counted call records make.
--
-- KEYS        campaign_keys(campaign)
-- ARGV[1..2]  and Returns: see compare.lua
--
-- ARGV[3]     shadow expiry in ms
-- ARGV[4..]   per hash: its index member (`m<hour>` | `q<day>`), the number k of shadow
--             fields named for it, then those k names (`<field>:<slot>`)
-- Drift       per number: scope 'series:' .. member, field `<bucket field>:<slot>` (1-4 the
--             outcomes, 5 follow-up, 6 talk ms), found, expected; like a counter
local i = 4
while i <= #ARGV do
  local member, k = ARGV[i], tonumber(ARGV[i + 1])
  local kind, number = string.sub(member, 1, 1), tonumber(string.sub(member, 2))
  local key = TAG .. 't' .. kind .. ':' .. number
  local fields, seen = {}, {}
  for j = 1, k do
    local field = string.match(ARGV[i + 1 + j], '^(%d+):')
    if field and not seen[field] then
      seen[field] = true
      fields[#fields + 1] = field
    end
  end
  i = i + 2 + k
  local flat = redis.call('HGETALL', key)
  local found = {}
  for j = 1, #flat, 2 do
    found[flat[j]] = flat[j + 1]
    if not seen[flat[j]] then
      seen[flat[j]] = true
      fields[#fields + 1] = flat[j]
    end
  end
  local live = (number + 1) * SPAN[kind] + RETAIN[kind] > now_ms()
  for _, field in ipairs(fields) do
    local names = {}
    for slot = 1, 6 do names[slot] = 'S' .. member .. ':' .. field .. ':' .. slot end
    local want = redis.call('HMGET', SHADOW, unpack(names))
    local d = {0, 0, 0, 0, 0, 0}
    for slot = 1, 6 do d[slot] = live and tonumber(want[slot] or '0') or 0 end
    local have = unpack_series(found[field])
    local differs = false
    for slot = 1, 6 do
      if have[slot] ~= d[slot] then
        differs = true
        drift('series:' .. member, field .. ':' .. slot, have[slot], d[slot])
      elseif census and d[slot] ~= 0 then
        report('series:' .. member, field .. ':' .. slot, have[slot], d[slot])
      end
    end
    if differs and not dry then
      local expected = pack_series(d)
      if expected then
        redis.call('HSET', key, field, expected)
      else
        redis.call('HDEL', key, field)
      end
    end
  end
  if not dry and live and redis.call('EXISTS', key) == 1 then
    local expires = (number + 1) * SPAN[kind] + RETAIN[kind]
    redis.call('PEXPIREAT', key, string.format('%d', expires))
    redis.call('ZADD', SERIES_INDEX, string.format('%d', expires), member)
  end
end
redis.call('PEXPIRE', SHADOW, ARGV[3])
if fixes > 0 and not dry then redis.call('HINCRBY', STATS, 'rev', 1) end
return out
