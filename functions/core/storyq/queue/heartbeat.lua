-- heartbeat: extend a lease, only for the holder of its current fence. A lease Redis forgot
-- (flushed or evicted: the job is nowhere in the queue and has no bookkeeping) is re-created,
-- so a generation that outlived its lease that way counts against the global cap again.
-- KEYS[1] active   ZSET job -> lease expiry (ms)
-- KEYS[2] jobs     HASH <job>:attempts is the fence of the live lease, <job>:user
-- KEYS[3] waiting  ZSET job -> fair-share score
-- KEYS[4] delayed  ZSET job -> due time (ms)
-- ARGV[1] job id
-- ARGV[2] fence (attempt number) the caller was given by claim
-- ARGV[3] new lease length from now (ms)
-- ARGV[4] the job's user ('' if unknown)
-- Returns 1 when the lease was extended (or re-created), 0 when it was reaped or the fence is
-- stale.
local active, jobs, waiting, delayed = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job, fence = ARGV[1], ARGV[2]
local expiry = fmt_int(now_ms() + tonumber(ARGV[3]))
if holds_lease(active, jobs, job, fence) then
  redis.call('ZADD', active, 'XX', expiry, job)
  return 1
end
local forgotten = not is_queued(waiting, delayed, active, job)
  and redis.call('HEXISTS', jobs, job .. ':attempts') == 0
if not forgotten then return 0 end
redis.call('ZADD', active, expiry, job)
redis.call('HSET', jobs, job .. ':attempts', fence, job .. ':user', ARGV[4])
return 1
