-- retry_later: put a job in the delayed set until its backoff has passed.
-- With a fence, only the holder of the job's live lease may do it (and its lease goes);
-- without one (a sweeper after reap_expired), only while nobody holds a lease on it.
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] delayed  ZSET job -> due time (ms)
-- KEYS[3] active   ZSET job -> lease expiry (ms)
-- KEYS[4] jobs     HASH <job>:user, <job>:attempts, <job>:weight
-- ARGV[1] job id
-- ARGV[2] user id
-- ARGV[3] attempts made so far
-- ARGV[4] delay from now (ms)
-- ARGV[5] fence of the caller's lease, or '' for none
-- Returns 1 when the job is now delayed, 0 when the fence is stale or another lease holds it.
local waiting, delayed, active, jobs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job, user, attempts, fence = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local now = now_ms()
if fence ~= '' then
  if not holds_lease(active, jobs, job, fence) then return 0 end
  redis.call('ZREM', active, job)
elseif redis.call('ZSCORE', active, job) then
  return 0
end
redis.call('ZREM', waiting, job)
redis.call('ZADD', delayed, fmt_int(now + tonumber(ARGV[4])), job)
redis.call('HSET', jobs, job .. ':user', user, job .. ':attempts', attempts)
return 1
