-- common.lua: helpers that scripts.py puts in front of every operation script.
-- Not a script of its own: it defines local functions and touches only the keys its callers
-- pass in (every one of which the caller received in KEYS).

-- Scores in the waiting set are tag * SEQ_SPAN + arrival number, so equal fair-share tags are
-- served first come, first served; the product stays below 2^53 (exact in a double) while
-- tags stay below 2^33 units, and the tags restart at 0 each time the queue drains.
local SEQ_SPAN = 1048576
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

-- The position reply shared by enqueue and position: rank, queue length, active count and
-- the rolling mean generation time ('' while there is no sample yet).
local function position_reply(waiting, active, stats, rank)
  local mean = redis.call('HGET', stats, 'mean_seconds') or ''
  return {rank, redis.call('ZCARD', waiting), redis.call('ZCARD', active), mean}
end

-- Add `job` to the waiting set with a start-time-fair-queuing score:
-- tag = max(virtual time, the user's last tag) + TAG_UNITS / weight. The fair hash also counts
-- each user's waiting jobs (`n:<user>`), so a user whose last waiting job goes is given their
-- virtual time back (see unwait). Five commands: the fair hash is read and written once.
local function add_waiting(waiting, finish, fair, job, user, weight)
  local state = redis.call('HMGET', fair, 'vtime', 'seq', 'n:' .. user)
  local vtime, seq = tonumber(state[1] or '0'), (tonumber(state[2] or '0') + 1) % SEQ_SPAN
  local last = tonumber(redis.call('ZSCORE', finish, user) or '0')
  local cost = math.max(1, math.floor(TAG_UNITS / weight + 0.5))
  local tag = math.max(vtime, last) + cost
  redis.call('ZADD', waiting, fmt_int(tag * SEQ_SPAN + seq), job)
  redis.call('ZADD', finish, fmt_int(tag), user)
  redis.call('HSET', fair, 'seq', seq, 'n:' .. user, tonumber(state[3] or '0') + 1)
end

-- One of `user`'s jobs left the waiting set (served or withdrawn); how many still wait.
local function left_waiting(fair, user)
  local left = redis.call('HINCRBY', fair, 'n:' .. user, -1)
  if left <= 0 then redis.call('HDEL', fair, 'n:' .. user) end
  return left
end

-- Move up to `limit` delayed jobs whose due time has come into the waiting set.
local function promote(delayed, waiting, jobs, finish, fair, now, limit)
  if limit <= 0 then return 0 end
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, limit)
  for _, job in ipairs(due) do
    local info = redis.call('HMGET', jobs, job .. ':user', job .. ':weight')
    redis.call('ZREM', delayed, job)
    add_waiting(waiting, finish, fair, job, info[1] or '', tonumber(info[2] or '1'))
  end
  return #due
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
  redis.call('HDEL', jobs, job .. ':user', job .. ':fence', job .. ':weight')
end

-- Take `job` out of the waiting set and give its user back the virtual time it was charged,
-- so a user who withdraws jobs is not served later for them: once none of theirs waits, their
-- next job is tagged from the queue's virtual time again; while others wait, only withdrawing
-- the newest takes its cost back (the older ones keep their order: one user's jobs stay FIFO).
-- Returns 1 if it was waiting. Once nothing waits, the fair-share clock starts again at 0.
local function unwait(waiting, finish, fair, jobs, job)
  local score = redis.call('ZSCORE', waiting, job)
  if not score then return 0 end
  redis.call('ZREM', waiting, job)
  local info = redis.call('HMGET', jobs, job .. ':user', job .. ':weight')
  local user, weight = info[1], tonumber(info[2] or '1')
  if user then
    local tag = math.floor(tonumber(score) / SEQ_SPAN)
    local last = tonumber(redis.call('ZSCORE', finish, user) or '0')
    local vtime = tonumber(redis.call('HGET', fair, 'vtime') or '0')
    local back = last - math.max(1, math.floor(TAG_UNITS / weight + 0.5))
    if left_waiting(fair, user) <= 0 or (tag >= last and back <= vtime) then
      redis.call('ZREM', finish, user)
    elseif tag >= last then
      redis.call('ZADD', finish, fmt_int(back), user)
    end
  end
  if redis.call('ZCARD', waiting) == 0 then redis.call('DEL', fair, finish) end
  return 1
end

local function is_queued(waiting, delayed, active, job)
  return redis.call('ZSCORE', waiting, job) or redis.call('ZSCORE', delayed, job)
    or redis.call('ZSCORE', active, job)
end

-- Redis knows a newer fence for `job` than `fence` (a number): whoever holds `fence` is stale.
local function newer_fence_known(jobs, job, fence)
  local known = fence_of(jobs, job)
  return known ~= nil and known > fence
end

-- Redis holds nothing of `job` and no newer fence: Postgres's view of it (`fence`) may go in.
local function missing(waiting, delayed, active, jobs, job, fence)
  return not is_queued(waiting, delayed, active, job)
    and not newer_fence_known(jobs, job, tonumber(fence))
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

-- Put in the pending jobs Redis lacks (in none of waiting, delayed, active, and no newer
-- fence known), in the order given; one whose next attempt is still ahead is delayed.
-- `pending`: an array of {job, user, fence, weight, due (Unix ms) or false}, each job once.
-- Returns how many were added. Costs one ZMSCORE when every job is already waiting.
local function add_missing(waiting, delayed, active, jobs, finish, fair, now, pending)
  if #pending == 0 then return 0 end
  local by_id, ids = {}, {}
  for _, p in ipairs(pending) do
    if not by_id[p[1]] then
      by_id[p[1]] = p
      ids[#ids + 1] = p[1]
    end
  end
  local rest = not_queued(waiting, delayed, active, ids)
  if #rest == 0 then return 0 end
  local fences = job_fields(jobs, rest, 'fence')[1]
  local added = 0
  for i, job in ipairs(rest) do
    local p = by_id[job]
    local known = tonumber(fences[i])
    if not (known and known > tonumber(p[3])) then
      redis.call('HSET', jobs, job .. ':user', p[2], job .. ':fence', p[3], job .. ':weight', p[4])
      if p[5] and p[5] > now then
        redis.call('ZADD', delayed, fmt_int(p[5]), job)
      else
        add_waiting(waiting, finish, fair, job, p[2], tonumber(p[4]))
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
