-- sweep_orphans: forget the bookkeeping of jobs that are in none of waiting, delayed, active
-- (left behind by a worker that died between Postgres and Redis, or by a failed call). Walks
-- the jobs hash a bounded step per call, resuming where the last call stopped.
-- KEYS[1] jobs     HASH <job>:user, <job>:fence, <job>:weight
-- KEYS[2] waiting  ZSET
-- KEYS[3] delayed  ZSET
-- KEYS[4] active   ZSET
-- KEYS[5] cursor   STRING where the walk goes on next time ('0': from the start)
-- ARGV[1] how many hash fields to look at (HSCAN COUNT)
-- Returns how many jobs were forgotten.
local jobs, waiting, delayed, active, cursor = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local reply = redis.call('HSCAN', jobs, redis.call('GET', cursor) or '0', 'COUNT', ARGV[1])
redis.call('SET', cursor, reply[1])
local forgotten, seen = 0, {}
for i = 1, #reply[2], 2 do
  local job = string.match(reply[2][i], '^(.*):[^:]*$')
  if job and not seen[job] then
    seen[job] = true
    if not is_queued(waiting, delayed, active, job) then
      forget(jobs, job)
      forgotten = forgotten + 1
    end
  end
end
return forgotten
