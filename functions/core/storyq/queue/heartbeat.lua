-- heartbeat: extend a lease, only for the holder of its current fence.
-- KEYS[1] active   ZSET job -> lease expiry (ms)
-- KEYS[2] jobs     HASH <job>:attempts is the fence of the live lease
-- ARGV[1] job id
-- ARGV[2] fence (attempt number) the caller was given by claim
-- ARGV[3] new lease length from now (ms)
-- Returns 1 when the lease was extended, 0 when it is gone (reaped) or the fence is stale.
local active, jobs = KEYS[1], KEYS[2]
local job, fence = ARGV[1], ARGV[2]
local now = now_ms()
if not holds_lease(active, jobs, job, fence) then return 0 end
redis.call('ZADD', active, 'XX', fmt_int(now + tonumber(ARGV[3])), job)
return 1
