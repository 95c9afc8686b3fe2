-- remove: cancel a job that is waiting or delayed, and forget its bookkeeping.
-- A leased job is left alone (it is running; cancelling it is refused upstream).
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] delayed  ZSET job -> due time (ms)
-- KEYS[3] active   ZSET job -> lease expiry (ms)
-- KEYS[4] jobs     HASH <job>:user, <job>:attempts, <job>:weight
-- ARGV[1] job id
-- Returns 1 when it was waiting or delayed, 0 otherwise (leased, or not queued at all).
local waiting, delayed, active, jobs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job = ARGV[1]
if redis.call('ZSCORE', active, job) then return 0 end
local removed = redis.call('ZREM', waiting, job) + redis.call('ZREM', delayed, job)
forget(jobs, job)
return removed
