-- restore_leases: when Redis lost its state (no ready mark: flushed, evicted, new), give back
-- the leases of the jobs Postgres says are running, so they count against the global cap
-- again, then mark the queue ready for claims. With the mark present it changes nothing: the
-- decision is taken here, atomically, so a flush at any moment before this script runs is
-- seen by it (the caller always passes what Postgres has running). A lease restored for a
-- worker that is in fact dead lapses and is reaped like any other.
-- KEYS[1] active   ZSET job -> lease expiry (ms)
-- KEYS[2] jobs     HASH <job>:user, <job>:fence
-- KEYS[3] ready    STRING: the queue mirrors Postgres (claims are refused without it)
-- KEYS[4] waiting  ZSET job -> fair-share score
-- KEYS[5] delayed  ZSET job -> due time (ms)
-- ARGV[1] lease length from now (ms)
-- ARGV    from 2 on, groups of three: job id, user id, fence (the running attempt's token)
-- Returns how many leases were restored. A job already in Redis (leased, waiting or delayed),
-- or one for which Redis knows a newer fence (it moved on since the snapshot), is left as it is.
local active, jobs, ready, waiting, delayed = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('EXISTS', ready) == 1 then return 0 end
local now = now_ms()
local expiry = fmt_int(now + tonumber(ARGV[1]))
local restored = 0
for i = 2, #ARGV, 3 do
  local job, user, fence = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if missing(waiting, delayed, active, jobs, job, fence) then
    redis.call('ZADD', active, expiry, job)
    redis.call('HSET', jobs, job .. ':user', user, job .. ':fence', fence)
    restored = restored + 1
  end
end
redis.call('SET', ready, fmt_int(now))
return restored
