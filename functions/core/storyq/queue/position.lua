-- position: where a waiting job stands. Read-only, O(log n).
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] active   ZSET job -> lease expiry (ms)
-- KEYS[3] stats    HASH mean_seconds
-- ARGV[1] job id
-- Returns nil when the job is not waiting; else {rank (0-based), waiting count, active count,
-- mean seconds or ''}.
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if not rank then return false end
return position_reply(KEYS[1], KEYS[2], KEYS[3], rank)
