-- ack: the attempt is over with the job (completed, failed for good, refused at start, or
-- found stale): unless Redis knows a newer fence, drop every entry of the job (lease,
-- waiting, delayed) and its bookkeeping; and feed the generation time into the rolling mean
-- behind the ETA. The lease's user may then be under their running cap again: their held
-- jobs go back to the waiting set (release_held).
-- KEYS[1] active   ZSET job -> lease expiry (ms)
-- KEYS[2] jobs     HASH <job>:user, <job>:fence, <job>:weight, <job>:cap, <job>:prio
-- KEYS[3] stats    HASH mean_seconds, samples
-- KEYS[4] waiting  ZSET job -> fair-share score
-- KEYS[5] delayed  ZSET job -> due time (ms)
-- KEYS[6] finish   ZSET user -> last finish tag
-- KEYS[7] fair     HASH vtime, seq, head, n:<user>
-- KEYS[8] held_by_user ZSET (lex) <user>:<score>:<job>, the held jobs (common.lua)
-- ARGV[1] job id
-- ARGV[2] fence of the caller's attempt
-- ARGV[3] generation time in seconds, or '' to leave the mean alone
-- Returns 1 when the caller's lease was removed, 0 when it was not held (reaped, or a newer
-- fence owns the job; a newer fence's entries are left alone).
local active, jobs, stats, waiting, delayed, finish, fair, by_user =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local job, fence, seconds = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local info = redis.call('HMGET', jobs, job .. ':fence', job .. ':user')
local known, user = tonumber(info[1]), info[2]
if known and known ~= fence then return 0 end
local leased = redis.call('ZREM', active, job)
unwait(waiting, finish, fair, jobs, by_user, active, job)
redis.call('ZREM', delayed, job)
forget(jobs, job)
if leased == 0 then return 0 end
release_held(waiting, by_user, fair, active, jobs, user)
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
