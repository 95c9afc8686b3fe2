-- enqueue: queue a job in fair-share order, unless it is already waiting, delayed or leased.
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] delayed  ZSET job -> due time (ms)
-- KEYS[3] active   ZSET job -> lease expiry (ms)
-- KEYS[4] jobs     HASH <job>:user, <job>:fence, <job>:weight
-- KEYS[5] finish   ZSET user -> last finish tag
-- KEYS[6] fair     HASH vtime, seq
-- KEYS[7] stats    HASH mean_seconds, samples
-- ARGV[1] job id
-- ARGV[2] user id
-- ARGV[3] fence: the token Postgres issued for the job's next attempt
-- ARGV[4] weight (> 0; the user's share relative to weight 1)
-- Returns nil when the job is delayed or leased (left as it is), or when Redis already knows a
-- newer fence for it (this call is stale); otherwise, whether it was just added or already
-- waiting, {rank (0-based), waiting count, active count, mean seconds or ''}.
local waiting, delayed, active, jobs, finish, fair, stats =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local job, user, fence, weight = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

-- A job Redis keeps no bookkeeping of is in none of the sets (every script that puts a job
-- in one writes its bookkeeping in the same call): a new job costs no lookups.
local known = fence_of(jobs, job)
if known then
  local rank = redis.call('ZRANK', waiting, job)
  if rank then
    return position_reply(waiting, active, stats, rank)
  end
  if redis.call('ZSCORE', delayed, job) or redis.call('ZSCORE', active, job) then
    return false
  end
  if known > fence then return false end
end
redis.call('HSET', jobs, job .. ':user', user, job .. ':fence', ARGV[3], job .. ':weight', ARGV[4])
add_waiting(waiting, finish, fair, job, user, weight)
return position_reply(waiting, active, stats, redis.call('ZRANK', waiting, job))
