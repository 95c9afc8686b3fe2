-- claim: lease up to N waiting jobs, never letting more than max_active leases live at once.
-- Due retries are promoted first, so a retry does not wait for the next sweep.
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] delayed  ZSET job -> due time (ms)
-- KEYS[3] active   ZSET job -> lease expiry (ms)
-- KEYS[4] jobs     HASH <job>:user, <job>:fence, <job>:weight
-- KEYS[5] finish   ZSET user -> last finish tag
-- KEYS[6] fair     HASH vtime, seq
-- KEYS[7] ready    STRING present once the queue mirrors Postgres (see sweep.lua)
-- KEYS[8] pause    HASH until, probe, ... the provider's pause (see pause.lua)
-- ARGV[1] how many jobs the caller wants
-- ARGV[2] lease length (ms)
-- ARGV[3] max_active: the global cap on leases (every lease not yet reaped counts)
-- ARGV[4] how many due retries to promote at most
-- ARGV[5] how long a probe may go unanswered before another claim may probe (ms)
-- ARGV[6] the longest a caller is told to wait for a probe's answer before asking again (ms)
-- Returns a flat array {job, user, fence, score, job, user, fence, score, ...}: the fence is
-- the token Postgres issued for the attempt (0 if Redis lost it: the start is then refused),
-- the score the job's place in the waiting set (for `unclaim`). Returns -1, and leases
-- nothing, while `ready` is missing: after a flush the leases of running jobs are gone until a
-- sweep restores them.
-- While the provider is paused it leases nothing and returns {-2, ms}: ask again in ms. Once
-- the pause is over but no answer has ended it, one claim at a time is a probe: the reply is
-- {-3, job, user, fence, score} (at most one job) and the next claims get {-2, ms} until the
-- probe is answered or its time runs out.
local waiting, delayed, active, jobs, finish, fair, ready, pause =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
if redis.call('EXISTS', ready) == 0 then return -1 end
local now = now_ms()
local paused = redis.call('HMGET', pause, 'until', 'probe')
local probing = false
if paused[1] then
  local until_ms = tonumber(paused[1])
  if now < until_ms then return {-2, until_ms - now} end
  local probe = tonumber(paused[2] or '0') or 0
  if probe > now then return {-2, math.min(probe - now, tonumber(ARGV[6]))} end
  probing = true
end
promote(delayed, waiting, jobs, finish, fair, now, tonumber(ARGV[4]))

local free = tonumber(ARGV[3]) - redis.call('ZCARD', active)
local n = math.min(tonumber(ARGV[1]), free)
if probing then n = math.min(n, 1) end
if n <= 0 then return {} end
local popped = redis.call('ZPOPMIN', waiting, n)
if #popped == 0 then return {} end
if probing then redis.call('HSET', pause, 'probe', fmt_int(now + tonumber(ARGV[5]))) end

local expiry = fmt_int(now + tonumber(ARGV[2]))
-- Once nothing waits, the fair-share clock starts again at 0 (and the per-user counts go with
-- the fair hash); otherwise virtual time advances to the tag of the last job served: tags at
-- or below it no longer matter (max(vtime, tag) = vtime).
local drained = redis.call('ZCARD', waiting) == 0
local claims = {}
if probing then claims[1] = -3 end
for i = 1, #popped, 2 do
  local job = popped[i]
  local info = redis.call('HMGET', jobs, job .. ':user', job .. ':fence')
  if info[1] and not drained then left_waiting(fair, info[1]) end
  redis.call('ZADD', active, expiry, job)
  claims[#claims + 1] = job
  claims[#claims + 1] = info[1] or ''
  claims[#claims + 1] = tonumber(info[2] or '0')
  claims[#claims + 1] = popped[i + 1]
end
if drained then
  redis.call('DEL', fair, finish)
else
  local vtime = math.floor(tonumber(popped[#popped]) / SEQ_SPAN)
  redis.call('HSET', fair, 'vtime', fmt_int(vtime))
  redis.call('ZREMRANGEBYSCORE', finish, '-inf', fmt_int(vtime))
end
return claims
