-- ack: the job is finished (done, or failed for good): drop its lease and its bookkeeping, and
-- feed its generation time into the rolling mean behind the ETA.
-- KEYS[1] active   ZSET job -> lease expiry (ms)
-- KEYS[2] jobs     HASH <job>:user, <job>:attempts, <job>:weight
-- KEYS[3] stats    HASH mean_seconds, samples
-- ARGV[1] job id
-- ARGV[2] fence (attempt number) the caller was given by claim
-- ARGV[3] generation time in seconds, or '' to leave the mean alone
-- Returns 1 when the lease was removed, 0 when it is gone (reaped) or the fence is stale.
local active, jobs, stats = KEYS[1], KEYS[2], KEYS[3]
local job, fence, seconds = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not holds_lease(active, jobs, job, fence) then return 0 end
redis.call('ZREM', active, job)
forget(jobs, job)
if seconds then
  local current = redis.call('HMGET', stats, 'mean_seconds', 'samples')
  local samples = tonumber(current[2] or '0')
  local mean = tonumber(current[1] or '0')
  local alpha = math.max(1 / (samples + 1), MEAN_MIN_ALPHA)
  mean = mean + alpha * (seconds - mean)
  redis.call('HSET', stats, 'mean_seconds', string.format('%.17g', mean),
    'samples', math.min(samples + 1, 1000000))
end
return 1
