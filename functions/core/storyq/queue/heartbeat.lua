-- heartbeat: hold the lease of a running attempt for another lease length. The caller has
-- just had Postgres confirm that its fence is the job's running attempt, so Redis follows:
-- a lease that lapsed, was reaped, or was forgotten (flush, eviction) is re-created, and a
-- stale entry of the job in the waiting, held or delayed set (an older or the same fence, from a
-- rebuild that raced the start) is taken out. Only a newer fence in Redis wins: the caller
-- has been superseded.
-- KEYS[1] active   ZSET job -> lease expiry (ms)
-- KEYS[2] jobs     HASH <job>:fence, <job>:user
-- KEYS[3] waiting  ZSET job -> fair-share score
-- KEYS[4] delayed  ZSET job -> due time (ms)
-- KEYS[5] finish   ZSET user -> last finish tag
-- KEYS[6] fair     HASH vtime, seq, head, n:<user>
-- KEYS[7] held_by_user ZSET (lex) <user>:<score>:<job>, the held jobs (common.lua)
-- ARGV[1] job id
-- ARGV[2] fence of the caller's attempt
-- ARGV[3] new lease length from now (ms)
-- ARGV[4] the job's user ('' if unknown)
-- Returns 1 when the lease is held (extended or re-created), 0 when a newer fence owns the job.
local active, jobs, waiting, delayed, finish, fair, by_user =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local job, fence = ARGV[1], tonumber(ARGV[2])
local known = fence_of(jobs, job)
if known and known > fence then return 0 end
unwait(waiting, finish, fair, jobs, by_user, active, job)
redis.call('ZREM', delayed, job)
redis.call('ZADD', active, fmt_int(now_ms() + tonumber(ARGV[3])), job)
if known ~= fence then
  redis.call('HSET', jobs, job .. ':fence', ARGV[2], job .. ':user', ARGV[4])
end
return 1
