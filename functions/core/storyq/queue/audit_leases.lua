-- audit_leases: make the leases follow what Postgres has running, in both directions. With
-- long leases (Settings.dispatch_lease_seconds, not renewed while an attempt runs) neither a
-- lease Redis lost nor one left behind would otherwise be noticed for a long time.
-- 1. A lease whose job Postgres does not list as running, taken at least ARGV[2] ms ago (its
--    expiry is at most ARGV[3]), is removed and returned: the caller asks Postgres what became
--    of that attempt (a start that never came, a finish whose ack was lost, a restore that
--    raced an ack) and makes Redis follow, as for an expired lease.
-- 2. A job Postgres lists as running without a lease, whose bookkeeping Redis still keeps
--    under that fence or an older one (a lease lost or reaped; a stale waiting or delayed
--    entry from a rebuild that raced the start), gets its lease back and leaves the queue, so
--    it counts against the cap again. One whose bookkeeping is gone is left alone: it was
--    acked since the snapshot (or Redis was flushed, which restore_leases.lua answers).
-- KEYS[1] active   ZSET job -> lease expiry (ms)
-- KEYS[2] jobs     HASH <job>:user, <job>:fence
-- KEYS[3] waiting  ZSET job -> fair-share score
-- KEYS[4] delayed  ZSET job -> due time (ms)
-- KEYS[5] finish   ZSET user -> last finish tag
-- KEYS[6] fair     HASH vtime, seq, n:<user>
-- ARGV[1] lease length from now (ms) for a restored lease
-- ARGV[2] how long a lease must have been held before it is judged (ms)
-- ARGV[3] the length a lease is taken for (ms): held since = expiry - this
-- ARGV    from 4 on, groups of three: job id, user id, fence of each running attempt
-- Returns {restored, job, user, fence, ...}: how many leases were restored, then the leases
-- removed (each to exactly one caller). Idle (no lease, nothing running) it runs one ZRANGE.
local active, jobs, waiting, delayed, finish, fair =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = now_ms()
local running = {}
for i = 4, #ARGV, 3 do
  running[ARGV[i]] = {ARGV[i + 1], ARGV[i + 2]}
end
local judged_before = now - tonumber(ARGV[2]) + tonumber(ARGV[3])
local reply = {0}
local leased = redis.call('ZRANGE', active, 0, -1, 'WITHSCORES')
if #leased > 0 then
  local fields = {}
  for i = 1, #leased, 2 do
    fields[#fields + 1] = leased[i] .. ':user'
    fields[#fields + 1] = leased[i] .. ':fence'
  end
  local info = redis.call('HMGET', jobs, unpack(fields))
  for i = 1, #leased, 2 do
    local job = leased[i]
    if running[job] then
      running[job] = nil -- leased: nothing to restore
    elseif tonumber(leased[i + 1]) <= judged_before then
      redis.call('ZREM', active, job)
      reply[#reply + 1] = job
      reply[#reply + 1] = info[i] or ''
      reply[#reply + 1] = tonumber(info[i + 1] or '0')
    end
  end
end
local expiry = fmt_int(now + tonumber(ARGV[1]))
for job, attempt in pairs(running) do
  local known = fence_of(jobs, job)
  if known and known <= tonumber(attempt[2]) then
    unwait(waiting, finish, fair, jobs, job)
    redis.call('ZREM', delayed, job)
    redis.call('ZADD', active, expiry, job)
    if known ~= tonumber(attempt[2]) then
      redis.call('HSET', jobs, job .. ':user', attempt[1], job .. ':fence', attempt[2])
    end
    reply[1] = reply[1] + 1
  end
end
return reply
