-- unclaim: give a claim back untouched (Postgres refused to start it: the global cap is
-- reached): its lease goes and the job returns to the waiting set at the score it had, so it
-- keeps its place and its user's fair share.
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] active   ZSET job -> lease expiry (ms)
-- KEYS[3] jobs     HASH <job>:fence
-- ARGV[1] job id
-- ARGV[2] fence of the claim
-- ARGV[3] the score `claim` returned for it
-- Returns 1 when the job is waiting again, 0 when the claim's lease is no longer held.
local waiting, active, jobs = KEYS[1], KEYS[2], KEYS[3]
local job, fence = ARGV[1], ARGV[2]
if not holds_lease(active, jobs, job, fence) then return 0 end
redis.call('ZREM', active, job)
redis.call('ZADD', waiting, ARGV[3], job)
return 1
