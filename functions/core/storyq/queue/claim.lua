-- claim: lease up to N waiting jobs, never letting more than max_active leases live at once,
-- nor a user more than their running cap while anyone under theirs waits.
-- Due retries are promoted first, so a retry does not wait for the next sweep.
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] delayed  ZSET job -> due time (ms)
-- KEYS[3] active   ZSET job -> lease expiry (ms)
-- KEYS[4] jobs     HASH <job>:user, <job>:fence, <job>:weight, <job>:cap, <job>:prio
-- KEYS[5] finish   ZSET user -> last finish tag
-- KEYS[6] fair     HASH vtime, seq, head, n:<user>
-- KEYS[7] ready    STRING present once the queue mirrors Postgres (see sweep.lua)
-- KEYS[8] pause    HASH until, probe, ... the provider's pause (see pause.lua)
-- KEYS[9] held     ZSET job -> fair-share score (jobs of users at their cap)
-- KEYS[10] held_by_user ZSET (lex) <user>:<score>:<job>
-- ARGV[1] how many jobs the caller wants
-- ARGV[2] lease length (ms)
-- ARGV[3] max_active: the global cap on leases (every lease not yet reaped counts)
-- ARGV[4] how many due retries to promote at most
-- ARGV[5] how long a probe may go unanswered before another claim may probe (ms)
-- ARGV[6] the longest a caller is told to wait for a probe's answer before asking again (ms)
-- ARGV[7] how many jobs one claim may hold at most (bounds its run time)
-- Jobs are taken in score order. One whose user already holds as many leases as the job's cap
-- (`<job>:cap`) is held instead (see common.lua) and the next one is looked at. When the
-- waiting set is empty and slots are still free, held jobs take them, oldest first
-- (borrowing: the queue is work-conserving; a borrowed slot goes back to whoever waits when
-- its job ends, nothing is preempted).
-- Returns a flat array {job, user, fence, score, job, user, fence, score, ...}: the fence is
-- the token Postgres issued for the attempt (0 if Redis lost it: the start is then refused),
-- the score the job's place in the waiting set (for `unclaim`). Returns -1, and leases
-- nothing, while `ready` is missing: after a flush the leases of running jobs are gone until a
-- sweep restores them.
-- While the provider is paused it leases nothing and returns {-2, ms}: ask again in ms. Once
-- the pause is over but no answer has ended it, one claim at a time is a probe: the reply is
-- {-3, job, user, fence, score} (at most one job) and the next claims get {-2, ms} until the
-- probe is answered or its time runs out.
local waiting, delayed, active, jobs, finish, fair, ready, pause, held, by_user =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
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

local expiry = fmt_int(now + tonumber(ARGV[2]))
local claims = {}
if probing then claims[1] = -3 end
local leased, top_tag = 0, nil
-- user -> leases held, read from the active set the first time a capped job is looked at
local counts = nil

local function lease(job, info, score)
  local user = info[1] or ''
  if info[1] then left_waiting(fair, user) end
  redis.call('ZADD', active, expiry, job)
  if counts then counts[user] = (counts[user] or 0) + 1 end
  claims[#claims + 1] = job
  claims[#claims + 1] = user
  claims[#claims + 1] = tonumber(info[2] or '0')
  claims[#claims + 1] = score
  leased = leased + 1
end

local holds, hold_max = 0, tonumber(ARGV[7])
while leased < n and holds < hold_max do
  local popped = redis.call('ZPOPMIN', waiting, n - leased)
  if #popped == 0 then break end
  for i = 1, #popped, 2 do
    local job, score = popped[i], popped[i + 1]
    local info = job_info(jobs, job)
    local cap = tonumber(info[4] or '')
    if cap and not counts then counts = lease_counts(active, jobs) end
    if cap and (counts[info[1] or ''] or 0) >= cap then
      hold(held, by_user, job, info[1] or '', score)
      holds = holds + 1
    else
      local tag = math.floor(tonumber(score) / SEQ_SPAN)
      if not top_tag or tag > top_tag then top_tag = tag end
      lease(job, info, score)
    end
  end
end
-- Borrowing: nothing else waits, so held jobs may use the free slots.
while leased < n and redis.call('ZCARD', waiting) == 0 do
  local oldest = redis.call('ZRANGE', held, 0, 0, 'WITHSCORES')
  if #oldest == 0 then break end
  local job = oldest[1]
  unhold(held, by_user, jobs, job)
  lease(job, job_info(jobs, job), oldest[2])
end
if #claims == 0 or (probing and #claims == 1) then return {} end
if probing then redis.call('HSET', pause, 'probe', fmt_int(now + tonumber(ARGV[5]))) end

-- Once nothing is queued, the fair-share clock starts again at 0 (and the per-user counts go
-- with the fair hash); otherwise virtual time advances to the largest tag served (never
-- back: a borrowed or unclaimed job's old tag does not move it): tags far enough below it no
-- longer matter (forget_finished).
if redis.call('ZCARD', waiting) == 0 and redis.call('ZCARD', held) == 0 then
  redis.call('DEL', fair, finish)
elseif top_tag then
  local vtime = tonumber(redis.call('HGET', fair, 'vtime') or '0')
  if top_tag > vtime then
    redis.call('HSET', fair, 'vtime', fmt_int(top_tag))
    forget_finished(finish, fair, top_tag)
  end
end
return claims
