-- Shared by RECOUNT_BATCHES, RECOUNT_SERIES and RECOUNT_END (KEYS campaign_keys(campaign)).
--
-- Comparing, after the last step: RECOUNT_BATCHES for the batches, a bounded number per
-- call, then RECOUNT_END for the campaign's stats. The shadow stays live until RECOUNT_END
-- (every change is mirrored into it once all buckets are counted), so each comparison is
-- exact at the instant of its own call. The caller names the counter fields the shadow
-- holds (from an HSCAN of it); each call also takes every counter field the hash itself
-- holds: a field the shadow gained after the scan was mirrored from a change that wrote
-- the counter too.
--
-- ARGV[1]     token
-- ARGV[2]     '0' correct, '1' dry run (report only); '2' and '3' the same, and report
--             every counter checked, equal or not (a census)
-- Returns     {status, drift...}: status 0 done, -1 the recount is gone (begin again);
--             drift as flat quadruples scope ('stats' | batch id | 'index:' .. batch id),
--             field, found, expected. A counter missing from its hash is found 0 (a census
--             leaves out counters absent and expected 0).
if redis.call('HGET', SHADOW, 'tok') ~= ARGV[1] then return {-1} end
count_buckets(1e15)  -- buckets split off since the last step
local dry = ARGV[2] == '1' or ARGV[2] == '3'
local census = ARGV[2] == '2' or ARGV[2] == '3'
local out = {0}
local fixes = 0
-- numbers as integers (tostring would round past 14 digits, in exponent form)
local function text(x)
  return type(x) == 'number' and integer(x) or tostring(x)
end
local function report(scope, field, found, want)
  out[#out + 1] = scope
  out[#out + 1] = field
  out[#out + 1] = text(found)
  out[#out + 1] = text(want)
end
local function drift(scope, field, found, want)
  fixes = fixes + 1
  report(scope, field, found, want)
end

-- Compare counter fields with the shadow's (`prefix` .. field there): `flat` the fields
-- held (HGETALL pairs), `names` the shadow's fields for them from the caller's scan, `set`
-- what writes a corrected counter (0: remove it).
local function reconcile_counters(flat, scope, prefix, names, is_counter, set)
  local found, fields = {}, {}
  for j = 1, #flat, 2 do
    if is_counter(flat[j]) then
      found[flat[j]] = flat[j + 1]
      fields[#fields + 1] = flat[j]
    end
  end
  for _, name in ipairs(names) do
    if not found[name] then fields[#fields + 1] = name end
  end
  if #fields == 0 then return end
  local shadow_names = {}
  for i, name in ipairs(fields) do shadow_names[i] = prefix .. name end
  local want = redis.call('HMGET', SHADOW, unpack(shadow_names))
  for i, field in ipairs(fields) do
    local e = tonumber(want[i] or '0')
    local f = found[field]
    if tonumber(f or '0') ~= e then
      drift(scope, field, f or 0, e)
      if not dry then set(field, e) end
    elseif census and f then
      report(scope, field, f, e)
    end
  end
end
