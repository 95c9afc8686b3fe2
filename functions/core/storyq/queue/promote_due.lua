-- promote_due: move delayed jobs whose due time has passed into the waiting set (fair share).
-- KEYS[1] delayed  ZSET job -> due time (ms)
-- KEYS[2] waiting  ZSET job -> fair-share score
-- KEYS[3] jobs     HASH <job>:user, <job>:weight
-- KEYS[4] finish   ZSET user -> last finish tag
-- KEYS[5] fair     HASH vtime, seq
-- ARGV[1] how many to move at most
-- Returns how many were moved.
local now = now_ms()
return promote(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], now, tonumber(ARGV[1]))
