-- enqueue: queue a job in fair-share order, unless it is already queued (waiting, held,
-- delayed or leased).
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] delayed  ZSET job -> due time (ms)
-- KEYS[3] active   ZSET job -> lease expiry (ms)
-- KEYS[4] jobs     HASH <job>:user, <job>:fence, <job>:weight, <job>:cap, <job>:prio
-- KEYS[5] finish   ZSET user -> last finish tag
-- KEYS[6] fair     HASH vtime, seq, head, n:<user>
-- KEYS[7] stats    HASH mean_seconds, samples
-- KEYS[8] held_by_user ZSET (lex) <user>:<score>:<job>, the held jobs (common.lua)
-- ARGV[1] job id
-- ARGV[2] user id
-- ARGV[3] fence: the token Postgres issued for the job's next attempt
-- ARGV[4] weight (> 0; the user's share relative to weight 1)
-- ARGV[5] the user's running cap ('' for none)
-- ARGV[6] priority (-10 to 10: the head start, see common.lua)
-- Returns nil when the job is delayed or leased (left as it is), or when Redis already knows a
-- newer fence for it (this call is stale); otherwise, whether it was just added or already
-- waiting or held, the reply of position_reply (common.lua).
local waiting, delayed, active, jobs, finish, fair, stats, by_user =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local job, user, fence, weight = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

-- A job Redis keeps no bookkeeping of is in none of the sets (every script that puts a job
-- in one writes its bookkeeping in the same call): a new job costs no lookups.
local known = fence_of(jobs, job)
if known then
  local reply = position_reply(waiting, active, stats, jobs, by_user, job)
  if reply then return reply end
  if redis.call('ZSCORE', delayed, job) or redis.call('ZSCORE', active, job) then
    return false
  end
  if known > fence then return false end
end
redis.call('HSET', jobs, job .. ':user', user, job .. ':fence', ARGV[3], job .. ':weight', ARGV[4],
  job .. ':cap', ARGV[5], job .. ':prio', ARGV[6])
add_waiting(waiting, finish, fair, job, user, weight, ARGV[6])
return position_reply(waiting, active, stats, jobs, by_user, job, user, ARGV[5])
