-- position: where a waiting job stands (held or not). Read-only, O(log n) (plus the leases
-- when the job has a running cap).
-- KEYS[1] waiting  ZSET job -> fair-share score (+ HELD_OFFSET for a held job)
-- KEYS[2] active   ZSET job -> lease expiry (ms)
-- KEYS[3] stats    HASH mean_seconds
-- KEYS[4] jobs     HASH <job>:user, <job>:cap
-- KEYS[5] held_by_user ZSET (lex) <user>:<score>:<job>, the held jobs (common.lua)
-- ARGV[1] job id
-- Returns nil when the job is not waiting; else the reply of position_reply (common.lua).
return position_reply(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1])
