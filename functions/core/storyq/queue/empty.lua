-- empty: remove every waiting, held and delayed job (leases stay) and return their ids.
-- KEYS[1] waiting  ZSET job -> fair-share score
-- KEYS[2] delayed  ZSET job -> due time (ms)
-- KEYS[3] jobs     HASH <job>:user, <job>:fence, <job>:weight, <job>:cap, <job>:prio
-- KEYS[4] finish   ZSET user -> last finish tag
-- KEYS[5] fair     HASH vtime, seq, head, n:<user>
-- KEYS[6] held_by_user ZSET (lex) <user>:<score>:<job>, the held jobs (common.lua)
-- Returns the removed job ids, waiting ones first (in queue order, held ones last), then
-- delayed ones.
local waiting, delayed, jobs, finish, fair, by_user =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ids = redis.call('ZRANGE', waiting, 0, -1)
for _, job in ipairs(redis.call('ZRANGE', delayed, 0, -1)) do ids[#ids + 1] = job end
for _, job in ipairs(ids) do forget(jobs, job) end
redis.call('DEL', waiting, delayed, finish, fair, by_user)
return ids
