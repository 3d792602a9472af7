-- Chunked recount: RECOUNT_BEGIN, then RECOUNT_STEP until it answers 1, then RECOUNT_END.
-- Each call reads a bounded number of entities, so Redis serves others between them; the
-- worker's changes meanwhile are mirrored into the shadow (see the module's docstring).
-- KEYS of each: campaign_keys(campaign).
--
-- RECOUNT_BEGIN  ARGV: token, shadow expiry in ms. Starts a recount; returns 1, or 0 while
--                another one runs (its shadow lives until it ends or expires: wait).
if redis.call('EXISTS', SHADOW) == 1 then return 0 end
redis.call('HSET', SHADOW, 'tok', ARGV[1], 'c', 0, 'r', 0)
redis.call('PEXPIRE', SHADOW, ARGV[2])
return 1
