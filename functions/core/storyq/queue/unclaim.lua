-- unclaim: give a claim back untouched (Postgres refused to start it: the global cap is
-- reached): its lease goes and the job returns to the waiting set at the score it had, so it
-- keeps its place and its user's fair share. The fair-share clock is put back to at least the
-- job's tag (the claim may have reset it when it emptied the waiting set), so jobs queued
-- after it are still scored after it.
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] active   ZSET job -> lease expiry (ms)
-- KEYS[3] jobs     HASH <job>:fence, <job>:user
-- KEYS[4] finish   ZSET user -> last finish tag
-- KEYS[5] fair     HASH vtime, seq, head, n:<user>
-- ARGV[1] job id
-- ARGV[2] fence of the claim
-- ARGV[3] the score `claim` returned for it
-- Returns 1 when the job is waiting again, 0 when the claim's lease is no longer held.
local waiting, active, jobs, finish, fair = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local job, fence, score = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not holds_lease(active, jobs, job, fence) then return 0 end
redis.call('ZREM', active, job)
redis.call('ZADD', waiting, ARGV[3], job)
local tag = math.floor(score / SEQ_SPAN)
if tag > tonumber(redis.call('HGET', fair, 'vtime') or '0') then
  redis.call('HSET', fair, 'vtime', fmt_int(tag))
end
local user = redis.call('HGET', jobs, job .. ':user')
if user then
  redis.call('HINCRBY', fair, 'n:' .. user, 1)
  if tag > tonumber(redis.call('ZSCORE', finish, user) or '0') then
    redis.call('ZADD', finish, fmt_int(tag), user)
  end
end
return 1
