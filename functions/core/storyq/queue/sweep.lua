-- sweep: make Redis follow one Postgres snapshot and tidy up, in one call. Why each step
-- exists: storyq_worker/sweep.py. Idle (nothing queued, leased or running) it runs TIME, GET,
-- ZRANGE, ZRANGEBYSCORE, HSCAN and ZCARD: seven billed commands with the EVALSHA.
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] delayed  ZSET job -> due time (ms)
-- KEYS[3] active   ZSET job -> lease expiry (ms)
-- KEYS[4] jobs     HASH <job>:user, <job>:fence, <job>:weight, <job>:cap, <job>:prio
-- KEYS[5] finish   ZSET user -> last finish tag
-- KEYS[6] fair     HASH vtime, seq, head, n:<user>
-- KEYS[7] ready    STRING: the queue mirrors Postgres (claims are refused without it); its
--                  value is where the walk of the jobs hash for orphans goes on ('0': start)
-- KEYS[8] held_by_user ZSET (lex) <user>:<score>:<job>, the held jobs (common.lua)
-- ARGV[1] lease length from now (ms) for a lease restored or extended
-- ARGV[2] how long a lease must have been held before it is judged (ms); '' skips the audit
-- ARGV[3] the length a lease is taken for (ms): held since = expiry - this
-- ARGV[4] how many due retries to promote at most
-- ARGV[5] how many jobs-hash fields to look at for orphans (HSCAN COUNT); 0 skips the walk
-- ARGV[6] R: how many running attempts follow
-- ARGV    from 7 on: R groups of three, job id, user id, fence (Postgres's running attempts);
--         then groups of seven, job id, user id, fence, weight, running cap ('' for none),
--         priority, next attempt time (Unix ms) or '' (Postgres's pending jobs, in queue
--         order)
-- Steps, in this order:
-- 1. No ready mark (Redis flushed, evicted or new): the running jobs Redis holds nothing of
--    (and no newer fence) get their leases back, so they count against the cap again. The
--    decision is taken here, atomically, so a flush at any moment before this call is seen.
--    The reply says so (ready before: 0): the caller then puts back every pending job, from
--    the head of the queue, with calls that only do steps 1 and 2.
-- 2. With the ready mark there: the pending jobs Redis lacks (in none of waiting, delayed,
--    active; no newer fence) go in, and those it holds get their plan's figures now.
-- 3. The audit (unless ARGV[2] is ''): a lease whose job Postgres does not list as running,
--    taken at least ARGV[2] ago or expired, is removed and returned (the caller asks Postgres
--    what became of that attempt: a start that never came, a lost ack, a dead worker). An
--    expired lease of a running job is extended. A running job without a lease whose
--    bookkeeping Redis keeps under that fence or an older one (a lease lost or reaped; a stale
--    waiting or delayed entry) gets its lease back and leaves the queue; one whose bookkeeping
--    is gone was acked since the snapshot and is left alone.
-- 4. Due retries are promoted (at most ARGV[4]).
-- 5. The walk for orphans: bookkeeping of jobs in none of the sets is forgotten.
-- Then the ready mark is set (with the walk's cursor) and the waiting set counted.
-- Returns {ready before (1 or 0), added, restored, promoted, forgotten, waiting,
--          job, user, fence, job, user, fence, ...}: the counts, then the leases removed by
-- the audit (each to exactly one caller).
local waiting, delayed, active, jobs, finish, fair, ready, by_user =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local now = now_ms()
local expiry = fmt_int(now + tonumber(ARGV[1]))
local judge_after = tonumber(ARGV[2])
local n_running = tonumber(ARGV[6])
local running, pending = {}, {}
for i = 7, 6 + 3 * n_running, 3 do
  running[ARGV[i]] = {ARGV[i + 1], ARGV[i + 2]}
end
for i = 7 + 3 * n_running, #ARGV, 7 do
  pending[#pending + 1] = {ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4],
    ARGV[i + 5], tonumber(ARGV[i + 6])}
end

-- 1. and 2. (a Redis that lost its state gets no pending job here: the caller puts every one
-- back from the head of the queue, so they wait in queue order)
local mark = redis.call('GET', ready)
local restored, added = 0, 0
if not mark then
  restored = restore_leases(waiting, delayed, active, jobs, running, expiry)
else
  added = add_missing(waiting, delayed, active, jobs, by_user, finish, fair, now, pending)
end

-- 3.
local removed, settled = {}, {}
if judge_after then
  local judged_before = math.max(now, now - judge_after + tonumber(ARGV[3]))
  local leased = redis.call('ZRANGE', active, 0, -1, 'WITHSCORES')
  local decide = {}
  for i = 1, #leased, 2 do
    local job, lease_expiry = leased[i], tonumber(leased[i + 1])
    if running[job] then
      if lease_expiry <= now then decide[#decide + 1] = job end
    elseif lease_expiry <= judged_before then
      decide[#decide + 1] = job
    end
  end
  local info = #decide > 0 and job_fields(jobs, decide, 'user', 'fence') or {{}, {}}
  local users, fences = info[1], info[2]
  for i, job in ipairs(decide) do
    local known = tonumber(fences[i])
    local attempt = running[job]
    if not attempt then
      redis.call('ZREM', active, job)
      release_held(waiting, by_user, fair, active, jobs, users[i])
      settled[job] = true
      removed[#removed + 1] = job
      removed[#removed + 1] = users[i] or ''
      removed[#removed + 1] = known or 0
    elseif not known or known <= tonumber(attempt[2]) then
      redis.call('ZADD', active, expiry, job)
      if known ~= tonumber(attempt[2]) then
        redis.call('HSET', jobs, job .. ':user', attempt[1], job .. ':fence', attempt[2])
      end
    end
  end
  local unleased = {}
  local leased_set = {}
  for i = 1, #leased, 2 do leased_set[leased[i]] = true end
  for job in pairs(running) do
    if not leased_set[job] then unleased[#unleased + 1] = job end
  end
  if #unleased > 0 then
    local known_fences = job_fields(jobs, unleased, 'fence')[1]
    for i, job in ipairs(unleased) do
      local known, attempt = tonumber(known_fences[i]), running[job]
      if known and known <= tonumber(attempt[2]) then
        unwait(waiting, finish, fair, jobs, by_user, active, job)
        redis.call('ZREM', delayed, job)
        redis.call('ZADD', active, expiry, job)
        if known ~= tonumber(attempt[2]) then
          redis.call('HSET', jobs, job .. ':user', attempt[1], job .. ':fence', attempt[2])
        end
        restored = restored + 1
      end
    end
  end
end

-- 4.
local promoted = promote(delayed, waiting, jobs, finish, fair, now, tonumber(ARGV[4]))

-- 5. (a lease just removed keeps its bookkeeping: the caller settles it)
local cursor, forgotten = mark or '0', 0
if tonumber(ARGV[5]) > 0 then
  local scan = redis.call('HSCAN', jobs, cursor, 'COUNT', ARGV[5])
  cursor = scan[1]
  local ids, seen = {}, {}
  for i = 1, #scan[2], 2 do
    local job = string.match(scan[2][i], '^(.*):[^:]*$')
    if job and not seen[job] and not settled[job] then
      seen[job] = true
      ids[#ids + 1] = job
    end
  end
  for _, job in ipairs(not_queued(waiting, delayed, active, ids)) do
    forget(jobs, job)
    forgotten = forgotten + 1
  end
end
if cursor ~= mark then redis.call('SET', ready, cursor) end

local reply = {mark and 1 or 0, added, restored, promoted, forgotten,
  redis.call('ZCARD', waiting)}
for _, item in ipairs(removed) do reply[#reply + 1] = item end
return reply
