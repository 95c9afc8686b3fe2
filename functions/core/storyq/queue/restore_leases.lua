-- restore_leases: when Redis lost its state (no ready mark: flushed, evicted, new), give back
-- the leases of the jobs Postgres says are running, so they count against the global cap
-- again, then mark the queue ready for claims. With the mark present it changes nothing: the
-- decision is taken here, atomically, so a flush at any moment before this script runs is
-- seen by it (the caller always passes what Postgres has running). A lease restored for a
-- worker that is in fact dead lapses and is reaped like any other.
-- KEYS[1] active   ZSET job -> lease expiry (ms)
-- KEYS[2] jobs     HASH <job>:user, <job>:fence
-- KEYS[3] ready    STRING: the queue mirrors Postgres (claims are refused without it)
-- ARGV[1] lease length from now (ms)
-- ARGV    from 2 on, groups of three: job id, user id, fence (the running attempt's token)
-- Returns how many leases were restored (jobs already leased are left as they are).
local active, jobs, ready = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', ready) == 1 then return 0 end
local now = now_ms()
local expiry = fmt_int(now + tonumber(ARGV[1]))
local restored = 0
for i = 2, #ARGV, 3 do
  local job, user, fence = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if not redis.call('ZSCORE', active, job) then
    redis.call('ZADD', active, expiry, job)
    redis.call('HSET', jobs, job .. ':user', user, job .. ':fence', fence)
    restored = restored + 1
  end
end
redis.call('SET', ready, fmt_int(now))
return restored
