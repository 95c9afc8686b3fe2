-- remove: cancel a job that is waiting, held or delayed, forget its bookkeeping, and give its user
-- back the fair-share time it was charged. A leased job is left alone (it is running).
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] delayed  ZSET job -> due time (ms)
-- KEYS[3] active   ZSET job -> lease expiry (ms)
-- KEYS[4] jobs     HASH <job>:user, <job>:fence, <job>:weight, <job>:cap, <job>:prio
-- KEYS[5] finish   ZSET user -> last finish tag
-- KEYS[6] fair     HASH vtime, seq, head, n:<user>
-- KEYS[7] held_by_user ZSET (lex) <user>:<score>:<job>, the held jobs (common.lua)
-- ARGV[1] job id
-- Returns 1 when it was waiting, held or delayed, 0 otherwise (leased, or not queued at all).
local waiting, delayed, active, jobs, finish, fair, by_user =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local job = ARGV[1]
if redis.call('ZSCORE', active, job) then return 0 end
local removed = unwait(waiting, finish, fair, jobs, by_user, active, job) + redis.call('ZREM', delayed, job)
forget(jobs, job)
return removed
