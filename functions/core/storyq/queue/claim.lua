-- claim: lease up to N waiting jobs, never letting more than max_active leases live at once,
-- nor more leases of one user than their cap (the plan's max_active_per_user, when set) while
-- another user's job could take the slot.
-- Due retries are promoted first, so a retry does not wait for the next sweep.
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] delayed  ZSET job -> due time (ms)
-- KEYS[3] active   ZSET job -> lease expiry (ms)
-- KEYS[4] jobs     HASH <job>:user, <job>:fence, <job>:weight, <job>:cap
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
-- ARGV[7] how many waiting jobs beyond the N wanted to look at, passing over users at their cap
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
-- The first waiting jobs in fair-share order, with their users, fences and caps.
local window = redis.call('ZRANGE', waiting, 0, n + tonumber(ARGV[7]) - 1, 'WITHSCORES')
if #window == 0 then return {} end
local ids = {}
for i = 1, #window, 2 do ids[#ids + 1] = window[i] end
local fields = job_fields(jobs, ids, 'user', 'fence', 'cap')
local users, fences, caps = fields[1], fields[2], fields[3]

-- A user at their running cap (their plan's max_active_per_user) is passed over while others
-- can be served: their jobs keep their place. The leases say how many each user runs; they are only
-- read when a candidate has a cap.
local running, added, taken = nil, {}, {}
for i = 1, #ids do
  if #taken == n then break end
  local user, cap = users[i], tonumber(caps[i] or '0') or 0
  local room = true
  if user and cap > 0 then
    if not running then
      running = {}
      local leased = redis.call('ZRANGE', active, 0, -1)
      if #leased > 0 then
        for _, holder in ipairs(job_fields(jobs, leased, 'user')[1]) do
          if holder then running[holder] = (running[holder] or 0) + 1 end
        end
      end
    end
    room = (running[user] or 0) + (added[user] or 0) < cap
  end
  if room then
    taken[#taken + 1] = i
    if user then added[user] = (added[user] or 0) + 1 end
  end
end
-- Work-conserving: slots no one else in the window could take go to the users at their cap,
-- in queue order (Postgres's start agrees: it refuses a user at their cap only while another
-- user could start).
if #taken < n and #taken < #ids then
  local picked = {}
  for _, i in ipairs(taken) do picked[i] = true end
  for i = 1, #ids do
    if #taken == n then break end
    if not picked[i] then taken[#taken + 1] = i end
  end
  table.sort(taken)
end
if #taken == 0 then return {} end
local chosen = {}
for _, i in ipairs(taken) do chosen[#chosen + 1] = ids[i] end
redis.call('ZREM', waiting, unpack(chosen))
if probing then redis.call('HSET', pause, 'probe', fmt_int(now + tonumber(ARGV[5]))) end

local expiry = fmt_int(now + tonumber(ARGV[2]))
-- Once nothing waits, the fair-share clock starts again at 0 (and the per-user counts go with
-- the fair hash); otherwise virtual time advances to the tag of the last job served: tags at
-- or below it no longer matter (max(vtime, tag) = vtime).
local drained = redis.call('ZCARD', waiting) == 0
local claims = {}
if probing then claims[1] = -3 end
for _, i in ipairs(taken) do
  local job, user = ids[i], users[i]
  if user and not drained then left_waiting(fair, user) end
  redis.call('ZADD', active, expiry, job)
  claims[#claims + 1] = job
  claims[#claims + 1] = user or ''
  claims[#claims + 1] = tonumber(fences[i] or '0')
  claims[#claims + 1] = window[2 * i]
end
if drained then
  redis.call('DEL', fair, finish)
else
  local vtime = math.floor(tonumber(window[2 * taken[#taken]]) / SEQ_SPAN)
  redis.call('HSET', fair, 'vtime', fmt_int(vtime))
  redis.call('ZREMRANGEBYSCORE', finish, '-inf', fmt_int(vtime))
end
return claims
