-- claim: lease up to N waiting jobs, never letting more than max_active leases live at once,
-- nor a user more than their running cap while anyone under theirs waits.
-- Due retries are promoted first, so a retry does not wait for the next sweep.
-- KEYS[1] waiting  ZSET job -> fair-share score (+ HELD_OFFSET for a held job)
-- KEYS[2] delayed  ZSET job -> due time (ms)
-- KEYS[3] active   ZSET job -> lease expiry (ms)
-- KEYS[4] jobs     HASH <job>:user, <job>:fence, <job>:weight, <job>:cap, <job>:prio
-- KEYS[5] finish   ZSET user -> last finish tag
-- KEYS[6] fair     HASH vtime, seq, head, n:<user>
-- KEYS[7] ready    STRING present once the queue mirrors Postgres (see sweep.lua)
-- KEYS[8] pause    HASH until, probe, ... the provider's pause (see pause.lua)
-- KEYS[9] held_by_user ZSET (lex) <user>:<score>:<job>, the held jobs (see common.lua)
-- ARGV[1] how many jobs the caller wants
-- ARGV[2] lease length (ms)
-- ARGV[3] max_active: the global cap on leases (every lease not yet reaped counts)
-- ARGV[4] how many due retries to promote at most
-- ARGV[5] how long a probe may go unanswered before another claim may probe (ms)
-- ARGV[6] the longest a caller is told to wait for a probe's answer before asking again (ms)
-- ARGV[7] how many jobs one claim may hold at most (bounds its run time)
-- Jobs are taken in score order. One whose user already holds as many leases as the job's cap
-- (`<job>:cap`) is held (common.lua: it waits behind every job not held) and the next one is
-- looked at. A user under their cap gets their oldest held job before a newer one. Held jobs
-- reached because nothing else waits are leased, oldest first (borrowing: the queue is
-- work-conserving; a borrowed slot goes back to whoever waits when its job ends, nothing is
-- preempted).
-- Returns a flat array {job, user, fence, score, job, user, fence, score, ...}: the fence is
-- the token Postgres issued for the attempt (0 if Redis lost it: the start is then refused),
-- the score the job's own place in the waiting set (for `unclaim`). Returns -1, and leases
-- nothing, while `ready` is missing: after a flush the leases of running jobs are gone until a
-- sweep restores them.
-- While the provider is paused it leases nothing and returns {-2, ms}: ask again in ms. Once
-- the pause is over but no answer has ended it, one claim at a time is a probe: the reply is
-- {-3, job, user, fence, score} (at most one job) and the next claims get {-2, ms} until the
-- probe is answered or its time runs out.
local waiting, delayed, active, jobs, finish, fair, ready, pause, by_user =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
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
-- user -> how many of their jobs left the waiting set (the fair hash's n:<user>, applied once
-- at the end unless the queue drained)
local served = {}

-- the jobs leased by this call (a held job leased ahead of a newer one of its user may also
-- be in a batch popped before that)
local taken = {}

local function lease(job, info, score)
  local user = info[1] or ''
  taken[job] = true
  if info[1] then served[user] = (served[user] or 0) + 1 end
  redis.call('ZADD', active, expiry, job)
  if counts then counts[user] = (counts[user] or 0) + 1 end
  claims[#claims + 1] = job
  claims[#claims + 1] = user
  claims[#claims + 1] = tonumber(info[2] or '0')
  claims[#claims + 1] = fmt_int(score)
  leased = leased + 1
  local tag = math.floor(score / SEQ_SPAN)
  if not top_tag or tag > top_tag then top_tag = tag end
end

-- Whether the waiting set is known to be empty (the last pop came short and nothing was put
-- back since): saves counting it at the end.
local emptied = false
local holds, hold_max = 0, tonumber(ARGV[7])
while leased < n and holds < hold_max do
  local want = n - leased
  local popped = redis.call('ZPOPMIN', waiting, want)
  local put_back, swapped = false, false
  for i = 1, #popped, 2 do
    local job, score = popped[i], tonumber(popped[i + 1])
    local info = job_info(jobs, job)
    local user = info[1] or ''
    if taken[job] then
      -- already leased ahead of a newer job of its user, in this round
    elseif is_held(score) and swapped then
      -- a job not held went back in this round: it comes first (next round)
      redis.call('ZADD', waiting, fmt_int(score), job)
    elseif is_held(score) then
      -- nothing that is not held waits: borrowing
      redis.call('ZREM', by_user, held_member(user, own_score(score), job))
      lease(job, info, own_score(score))
    else
      local cap = tonumber(info[4] or '')
      if cap and not counts then counts = lease_counts(active, jobs) end
      if cap and (counts[user] or 0) >= cap then
        hold(waiting, by_user, job, user, score)
        holds = holds + 1
        put_back = true
      elseif cap then
        -- under the cap: the user's oldest held job (a cap raised, a job withdrawn) goes first
        local low, high = user_range(user)
        local oldest = redis.call('ZRANGEBYLEX', by_user, low, high, 'LIMIT', 0, 1)[1]
        local held_score, held_job = nil, nil
        if oldest then held_score, held_job = parse_held(oldest) end
        if held_job and tonumber(held_score) < score then
          redis.call('ZREM', by_user, oldest)
          redis.call('ZREM', waiting, held_job)
          redis.call('ZADD', waiting, fmt_int(score), job)
          put_back, swapped = true, true
          lease(held_job, job_info(jobs, held_job), tonumber(held_score))
        else
          lease(job, info, score)
        end
      else
        lease(job, info, score)
      end
    end
  end
  if #popped < 2 * want and not put_back then
    emptied = true
    break
  end
  if #popped == 0 then break end
end
if #claims == 0 or (probing and #claims == 1) then return {} end
if probing then redis.call('HSET', pause, 'probe', fmt_int(now + tonumber(ARGV[5]))) end

-- Once nothing waits, the fair-share clock starts again at 0 (and the per-user counts go with
-- the fair hash); otherwise virtual time advances to the largest tag served (never back: a
-- borrowed or unclaimed job's old tag does not move it): tags far enough below it no longer
-- matter.
if emptied or redis.call('ZCARD', waiting) == 0 then
  redis.call('DEL', fair, finish)
else
  for user, count in pairs(served) do
    local left = redis.call('HINCRBY', fair, 'n:' .. user, -count)
    if left <= 0 then redis.call('HDEL', fair, 'n:' .. user) end
  end
  local clock = redis.call('HMGET', fair, 'vtime', 'head')
  if top_tag and top_tag > tonumber(clock[1] or '0') then
    redis.call('HSET', fair, 'vtime', fmt_int(top_tag))
    redis.call('ZREMRANGEBYSCORE', finish, '-inf', fmt_int(top_tag - tonumber(clock[2] or '0')))
  end
end
return claims
