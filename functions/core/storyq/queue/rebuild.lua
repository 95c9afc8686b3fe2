-- rebuild: add the given jobs that Redis lacks (in none of waiting, delayed, active, and no
-- newer fence known), in the order given; a job whose next attempt is still ahead goes to the
-- delayed set.
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] delayed  ZSET job -> due time (ms)
-- KEYS[3] active   ZSET job -> lease expiry (ms)
-- KEYS[4] jobs     HASH <job>:user, <job>:fence, <job>:weight
-- KEYS[5] finish   ZSET user -> last finish tag
-- KEYS[6] fair     HASH vtime, seq
-- ARGV    groups of five, one per job: job id, user id, fence, weight,
--         next attempt time (Unix ms) or ''
-- Returns how many jobs were added.
local waiting, delayed, active, jobs, finish, fair =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = now_ms()
local added = 0
for i = 1, #ARGV, 5 do
  local job, user, fence, weight, due = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    tonumber(ARGV[i + 4])
  if missing(waiting, delayed, active, jobs, job, fence) then
    redis.call('HSET', jobs, job .. ':user', user, job .. ':fence', fence, job .. ':weight', weight)
    if due and due > now then
      redis.call('ZADD', delayed, fmt_int(due), job)
    else
      add_waiting(waiting, finish, fair, job, user, tonumber(weight))
    end
    added = added + 1
  end
end
return added
