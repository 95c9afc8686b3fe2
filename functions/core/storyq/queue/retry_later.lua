-- retry_later: put a job in the delayed set until its backoff has passed, under the fence
-- Postgres issued for its next attempt. Whatever older entries Redis holds for the job (a
-- lease of the attempt that failed, a stale waiting entry) go; a newer fence known to Redis
-- wins and nothing changes. The lease's user may then be under their running cap again: their
-- held jobs go back to the waiting set (release_held).
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] delayed  ZSET job -> due time (ms)
-- KEYS[3] active   ZSET job -> lease expiry (ms)
-- KEYS[4] jobs     HASH <job>:user, <job>:fence, <job>:weight, <job>:cap, <job>:prio
-- KEYS[5] finish   ZSET user -> last finish tag
-- KEYS[6] fair     HASH vtime, seq, head, n:<user>
-- KEYS[7] held_by_user ZSET (lex) <user>:<score>:<job>, the held jobs (common.lua)
-- ARGV[1] job id
-- ARGV[2] user id
-- ARGV[3] fence of the next attempt
-- ARGV[4] delay from now (ms)
-- Returns 1 when the job is now delayed, 0 when Redis knows a newer fence.
local waiting, delayed, active, jobs, finish, fair, by_user =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local job, user, fence = ARGV[1], ARGV[2], tonumber(ARGV[3])
if newer_fence_known(jobs, job, fence) then return 0 end
local leased = redis.call('ZREM', active, job)
unwait(waiting, finish, fair, jobs, by_user, active, job)
redis.call('ZADD', delayed, fmt_int(now_ms() + tonumber(ARGV[4])), job)
redis.call('HSET', jobs, job .. ':user', user, job .. ':fence', ARGV[3])
if leased == 1 then release_held(waiting, by_user, fair, active, jobs, user) end
return 1
