-- common.lua: helpers that scripts.py puts in front of every operation script.
-- Not a script of its own: it defines local functions and touches only the keys its callers
-- pass in (every one of which the caller received in KEYS).

-- Scores in the waiting set are tag * SEQ_SPAN + arrival number, so equal fair-share tags are
-- served first come, first served; the product stays below HELD_OFFSET = 2^52 while tags stay
-- below 2^32 units (four million weight-1 jobs), and the tags restart at 0 each time the queue
-- drains. A held job (see hold) waits at its score + HELD_OFFSET, behind every other job, and
-- still below 2^53 (exact in a double).
local SEQ_SPAN = 1048576
local HELD_OFFSET = 4503599627370496
-- Virtual-time units one job of weight 1 costs its user.
local TAG_UNITS = 1000
-- The rolling mean follows every sample exactly at first, then weighs each new one by 1/10.
local MEAN_MIN_ALPHA = 0.1

local function fmt_int(n)
  return string.format('%.0f', n)
end

local function now_ms()
  -- Redis 5+ replicates script effects by default; on older servers this makes TIME safe.
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Priority is a head start in virtual time: a user who starts waiting again is tagged from
-- `vtime - priority * TAG_UNITS` (never below 0) instead of `vtime`, so their first job goes
-- ahead of jobs tagged up to `priority` weight-1 jobs later (a negative priority starts them
-- that much later instead). Once they are backlogged their own last tag rules, so the head
-- start is bounded: priority never starves anyone. Priorities count up to +-PRIORITY_MAX.
local PRIORITY_MAX = 10

-- The head start (virtual-time units) of a job of this priority.
local function head_start(priority)
  local level = math.floor(tonumber(priority) or 0)
  return math.min(math.max(level, -PRIORITY_MAX), PRIORITY_MAX) * TAG_UNITS
end

-- Virtual-time units one job costs a user of this weight (at least 1).
local function tag_cost(weight)
  return math.max(1, math.floor(TAG_UNITS / weight + 0.5))
end

-- Add `job` to the waiting set with a start-time-fair-queuing score:
-- tag = max(virtual time - head start, the user's last tag, 0) + TAG_UNITS / weight. The fair
-- hash also counts each user's waiting jobs (`n:<user>`, held ones included), so a user whose
-- last queued job goes is given their virtual time back (see unwait), and keeps the largest
-- head start handed out since the clock last started (`head`), which bounds how far below
-- virtual time a tag can go. Five commands: the fair hash is read and written once.
local function add_waiting(waiting, finish, fair, job, user, weight, priority)
  local state = redis.call('HMGET', fair, 'vtime', 'seq', 'n:' .. user, 'head')
  local vtime, seq = tonumber(state[1] or '0'), (tonumber(state[2] or '0') + 1) % SEQ_SPAN
  local last = tonumber(redis.call('ZSCORE', finish, user) or '0')
  local head = head_start(priority)
  local tag = math.max(vtime - head, last, 0) + tag_cost(weight)
  redis.call('ZADD', waiting, fmt_int(tag * SEQ_SPAN + seq), job)
  redis.call('ZADD', finish, fmt_int(tag), user)
  if head > tonumber(state[4] or '0') then
    redis.call('HSET', fair, 'seq', seq, 'n:' .. user, tonumber(state[3] or '0') + 1, 'head', head)
  else
    redis.call('HSET', fair, 'seq', seq, 'n:' .. user, tonumber(state[3] or '0') + 1)
  end
end

-- One of `user`'s jobs left the queue (served or withdrawn); how many are still queued.
local function left_waiting(fair, user)
  local left = redis.call('HINCRBY', fair, 'n:' .. user, -1)
  if left <= 0 then redis.call('HDEL', fair, 'n:' .. user) end
  return left
end

-- The job's user, fence, weight, running cap ('' or absent: none) and priority, as the jobs
-- hash holds them (false where absent).
local function job_info(jobs, job)
  return redis.call('HMGET', jobs, job .. ':user', job .. ':fence', job .. ':weight',
    job .. ':cap', job .. ':prio')
end

-- Move up to `limit` delayed jobs whose due time has come into the waiting set.
local function promote(delayed, waiting, jobs, finish, fair, now, limit)
  if limit <= 0 then return 0 end
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, limit)
  for _, job in ipairs(due) do
    local info = job_info(jobs, job)
    redis.call('ZREM', delayed, job)
    add_waiting(waiting, finish, fair, job, info[1] or '', tonumber(info[3] or '1'), info[5])
  end
  return #due
end

-- Held jobs: a user at their running cap (`<job>:cap`) does not take a slot while anyone
-- else's job waits. A claim that reaches a job of a user holding that many leases holds it:
-- puts it back in the waiting set at its score + HELD_OFFSET, behind every job not held (so a
-- claim reaches held jobs only when nothing else waits: then it leases them, oldest first,
-- which is borrowing), and lists it in `held_by_user` (all scores 0, members
-- `<user>:<score, 16 digits>:<job>`: one user's held jobs, oldest first, by ZRANGEBYLEX). A
-- held job goes back to its own score when its user is under their cap again (release_held).
local function held_member(user, score, job)
  return user .. ':' .. string.format('%016.0f', tonumber(score)) .. ':' .. job
end

-- The own score (text) and the job of a `held_by_user` member (user ids hold no ':').
local function parse_held(member)
  return string.match(member, ':(%d+):(.*)$')
end

local function is_held(score)
  return tonumber(score) >= HELD_OFFSET
end

-- The score a job waits at when it is not held.
local function own_score(score)
  local n = tonumber(score)
  if n >= HELD_OFFSET then return n - HELD_OFFSET end
  return n
end

local function user_range(user)
  return '[' .. user .. ':', '(' .. user .. ';'
end

-- `job` (just popped from the waiting set at `score`, its own) waits again, held.
local function hold(waiting, by_user, job, user, score)
  redis.call('ZADD', waiting, fmt_int(tonumber(score) + HELD_OFFSET), job)
  redis.call('ZADD', by_user, 0, held_member(user, score, job))
end

-- How many leases each user holds (live or lapsed, not yet reaped): user -> count. O(leases),
-- and leases are never many more than max_active.
local function lease_counts(active, jobs)
  local leased = redis.call('ZRANGE', active, 0, -1)
  local counts = {}
  if #leased == 0 then return counts end
  local fields = {}
  for i, job in ipairs(leased) do fields[i] = job .. ':user' end
  for _, user in ipairs(redis.call('HMGET', jobs, unpack(fields))) do
    if user then counts[user] = (counts[user] or 0) + 1 end
  end
  return counts
end

-- Up to this many of a user's held jobs go back per call of release_held (a cap raised
-- meanwhile frees more at the next one).
local RELEASE_MAX = 50

-- `user` may be under their cap again (a lease of theirs ended, a job of theirs left the
-- queue, their cap changed): their held jobs go back to their own scores, oldest first, while
-- the user's leases plus their waiting jobs not held stay under the cap each job carries.
-- Returns how many went back. One command when the user has nothing held.
local function release_held(waiting, by_user, fair, active, jobs, user)
  if not user or user == '' then return 0 end
  local low, high = user_range(user)
  local members = redis.call('ZRANGEBYLEX', by_user, low, high, 'LIMIT', 0, RELEASE_MAX)
  if #members == 0 then return 0 end
  local held = #members
  if held == RELEASE_MAX then held = redis.call('ZLEXCOUNT', by_user, low, high) end
  local queued = tonumber(redis.call('HGET', fair, 'n:' .. user) or '0')
  local busy = (lease_counts(active, jobs)[user] or 0) + math.max(0, queued - held)
  local released = 0
  for _, member in ipairs(members) do
    local score, job = parse_held(member)
    local cap = tonumber(redis.call('HGET', jobs, job .. ':cap') or '')
    if cap and busy >= cap then break end
    redis.call('ZADD', waiting, 'XX', score, job)
    redis.call('ZREM', by_user, member)
    busy = busy + 1
    released = released + 1
  end
  return released
end

-- The position reply shared by enqueue and position, for a waiting job; false when it is not
-- waiting. {rank, waiting (held ones included), leases, mean seconds or '', own, cap or '',
-- held (1/0), at cap (1/0)}: rank is its place in the waiting set (a held job's is behind
-- every job not held), own how many of its user's held jobs are ahead of it (all of them for
-- a job not held), cap the job's running cap, at cap whether its user holds that many leases
-- now. `user` and `cap` are read from the jobs hash unless given. Without a cap: five
-- commands (four when they are given), as many as before caps existed plus one.
local function position_reply(waiting, active, stats, jobs, by_user, job, user, cap)
  local rank = redis.call('ZRANK', waiting, job)
  if not rank then return false end
  if user == nil then
    local info = redis.call('HMGET', jobs, job .. ':user', job .. ':cap')
    user, cap = info[1] or '', info[2]
  end
  cap = tonumber(cap or '')
  local held, own, at_cap = 0, 0, 0
  if cap then
    local low, high = user_range(user)
    local score = redis.call('ZSCORE', waiting, job)
    if is_held(score) then
      held = 1
      high = '(' .. held_member(user, own_score(score), job)
    end
    own = redis.call('ZLEXCOUNT', by_user, low, high)
    if (lease_counts(active, jobs)[user] or 0) >= cap then at_cap = 1 end
  end
  return {rank, redis.call('ZCARD', waiting), redis.call('ZCARD', active),
    redis.call('HGET', stats, 'mean_seconds') or '', own, cap and fmt_int(cap) or '', held,
    at_cap}
end

-- The fencing token Redis knows for `job` (issued by Postgres, only ever grows), or nil.
local function fence_of(jobs, job)
  return tonumber(redis.call('HGET', jobs, job .. ':fence'))
end

-- The lease of `job` is held under `fence`: the caller may act on it.
local function holds_lease(active, jobs, job, fence)
  if not redis.call('ZSCORE', active, job) then return false end
  return fence_of(jobs, job) == tonumber(fence)
end

local function forget(jobs, job)
  redis.call('HDEL', jobs, job .. ':user', job .. ':fence', job .. ':weight', job .. ':cap',
    job .. ':prio')
end

-- Take `job` out of the waiting set (held or not) and give its user back the virtual time it
-- was charged, so a user who withdraws jobs is not served later for them: once none of theirs
-- waits, their next job is tagged from the queue's virtual time again (but never before their
-- last tag: a priority's head start is not renewed by withdrawing); while others wait, only
-- withdrawing the newest takes its cost back (the older ones keep their order: one user's
-- jobs stay FIFO). The user's held jobs may then go back (release_held). Returns 1 if it was
-- waiting. Once nothing waits, the fair-share clock starts again at 0.
local function unwait(waiting, finish, fair, jobs, by_user, active, job)
  local score = redis.call('ZSCORE', waiting, job)
  if not score then return 0 end
  redis.call('ZREM', waiting, job)
  local info = redis.call('HMGET', jobs, job .. ':user', job .. ':weight')
  local user, weight = info[1], tonumber(info[2] or '1')
  if user then
    local own = own_score(score)
    if is_held(score) then redis.call('ZREM', by_user, held_member(user, own, job)) end
    local tag = math.floor(own / SEQ_SPAN)
    local last = tonumber(redis.call('ZSCORE', finish, user) or '0')
    local vtime = tonumber(redis.call('HGET', fair, 'vtime') or '0')
    if left_waiting(fair, user) <= 0 then
      if last > vtime then redis.call('ZADD', finish, fmt_int(vtime), user) end
    elseif tag >= last then
      redis.call('ZADD', finish, fmt_int(last - tag_cost(weight)), user)
    end
  end
  if redis.call('ZCARD', waiting) == 0 then
    redis.call('DEL', fair, finish)
  elseif user then
    release_held(waiting, by_user, fair, active, jobs, user)
  end
  return 1
end

-- Redis knows a newer fence for `job` than `fence` (a number): whoever holds `fence` is stale.
local function newer_fence_known(jobs, job, fence)
  local known = fence_of(jobs, job)
  return known ~= nil and known > fence
end

-- Redis's limit on the arguments unpack() may spread into one call, with room to spare.
local UNPACK_MAX = 1000

-- Of `ids` (an array of job ids, order kept), those in none of waiting, delayed and active:
-- one ZMSCORE per set and per thousand ids, each asking only about the ids still unaccounted
-- for, so checking a page of jobs that are all waiting costs one command.
local function not_queued(waiting, delayed, active, ids)
  local rest = ids
  for _, set in ipairs({waiting, delayed, active}) do
    if #rest == 0 then break end
    local left = {}
    for first = 1, #rest, UNPACK_MAX do
      local last = math.min(first + UNPACK_MAX - 1, #rest)
      local scores = redis.call('ZMSCORE', set, unpack(rest, first, last))
      for i = first, last do
        if not scores[i - first + 1] then left[#left + 1] = rest[i] end
      end
    end
    rest = left
  end
  return rest
end

-- For each suffix given ('user', 'fence', ...), the values of `<job>:<suffix>` in the jobs
-- hash for each of `ids` (false where absent): {values of the first suffix, of the second,
-- ...}, in one HMGET per few hundred ids.
local function job_fields(jobs, ids, ...)
  local suffixes = {...}
  local values = {}
  for s = 1, #suffixes do values[s] = {} end
  local step = math.floor(UNPACK_MAX / #suffixes)
  for first = 1, #ids, step do
    local fields = {}
    for i = first, math.min(first + step - 1, #ids) do
      for _, suffix in ipairs(suffixes) do fields[#fields + 1] = ids[i] .. ':' .. suffix end
    end
    local reply = redis.call('HMGET', jobs, unpack(fields))
    for k = 1, #fields do
      local list = values[(k - 1) % #suffixes + 1]
      list[#list + 1] = reply[k]
    end
  end
  return values
end

-- Make Redis follow the pending jobs of a snapshot, in the order given:
-- `pending` is an array of {job, user, fence, weight, cap ('' for none), priority, due (Unix
-- ms) or false}, each job once.
-- The jobs Redis lacks (in none of waiting, delayed, active, and no newer fence known) go in;
-- one whose next attempt is still ahead is delayed.
-- The jobs Redis holds under the same fence take the weight, cap and priority the snapshot
-- gives (the user's plan now for weight and cap), so an operator's plan change reaches the
-- jobs already queued: a cap at once (the held jobs of a user whose cap changed go back as far
-- as it allows), a weight from the job's next tag on.
-- Returns how many were added. Costs one ZMSCORE and one HMGET when nothing changed.
local function add_missing(waiting, delayed, active, jobs, by_user, finish, fair, now, pending)
  if #pending == 0 then return 0 end
  local by_id, ids = {}, {}
  for _, p in ipairs(pending) do
    if not by_id[p[1]] then
      by_id[p[1]] = p
      ids[#ids + 1] = p[1]
    end
  end
  local rest = not_queued(waiting, delayed, active, ids)
  local absent = {}
  for _, job in ipairs(rest) do absent[job] = true end
  local present = {}
  for _, job in ipairs(ids) do
    if not absent[job] then present[#present + 1] = job end
  end
  if #present > 0 then
    local known = job_fields(jobs, present, 'fence', 'weight', 'cap', 'prio')
    local fields, recapped = {}, {}
    for i, job in ipairs(present) do
      local p = by_id[job]
      if tonumber(known[1][i]) == tonumber(p[3]) then
        for k, item in ipairs({{'weight', p[4]}, {'cap', p[5]}, {'prio', p[6]}}) do
          if tostring(known[k + 1][i] or '') ~= tostring(item[2]) then
            fields[#fields + 1] = job .. ':' .. item[1]
            fields[#fields + 1] = item[2]
            if item[1] == 'cap' then recapped[p[2]] = true end
          end
        end
      end
      if #fields >= UNPACK_MAX - 6 or (i == #present and #fields > 0) then
        redis.call('HSET', jobs, unpack(fields))
        fields = {}
      end
    end
    for user in pairs(recapped) do release_held(waiting, by_user, fair, active, jobs, user) end
  end
  if #rest == 0 then return 0 end
  local fences = job_fields(jobs, rest, 'fence')[1]
  local added = 0
  for i, job in ipairs(rest) do
    local p = by_id[job]
    local known = tonumber(fences[i])
    if not (known and known > tonumber(p[3])) then
      redis.call('HSET', jobs, job .. ':user', p[2], job .. ':fence', p[3], job .. ':weight', p[4],
        job .. ':cap', p[5], job .. ':prio', p[6])
      if p[7] and p[7] > now then
        redis.call('ZADD', delayed, fmt_int(p[7]), job)
      else
        add_waiting(waiting, finish, fair, job, p[2], tonumber(p[4]), p[6])
      end
      added = added + 1
    end
  end
  return added
end

-- Give the running jobs (`running`: job -> {user, fence}) their leases back, for a Redis that
-- lost its state: each job in none of the sets and without a newer fence. Returns how many.
local function restore_leases(waiting, delayed, active, jobs, running, expiry)
  local ids = {}
  for job in pairs(running) do ids[#ids + 1] = job end
  local rest = not_queued(waiting, delayed, active, ids)
  if #rest == 0 then return 0 end
  local fences = job_fields(jobs, rest, 'fence')[1]
  local restored = 0
  for i, job in ipairs(rest) do
    local user, fence = running[job][1], running[job][2]
    local known = tonumber(fences[i])
    if not (known and known > tonumber(fence)) then
      redis.call('ZADD', active, expiry, job)
      redis.call('HSET', jobs, job .. ':user', user, job .. ':fence', fence)
      restored = restored + 1
    end
  end
  return restored
end
