-- reap_expired: remove leases whose expiry has passed and hand them to the caller, once each.
-- The jobs' bookkeeping stays: the caller asks Postgres what became of the attempt
-- (requeue_stalled_story_job) and makes Redis follow (retry_later, heartbeat or ack).
-- KEYS[1] active   ZSET job -> lease expiry (ms)
-- KEYS[2] jobs     HASH <job>:user, <job>:fence
-- ARGV[1] how many to reap at most
-- Returns a flat array {job, user, fence, ...} of the leases removed by this call.
local active, jobs = KEYS[1], KEYS[2]
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local reaped = {}
for _, job in ipairs(expired) do
  local info = redis.call('HMGET', jobs, job .. ':user', job .. ':fence')
  redis.call('ZREM', active, job)
  reaped[#reaped + 1] = job
  reaped[#reaped + 1] = info[1] or ''
  reaped[#reaped + 1] = tonumber(info[2] or '0')
end
return reaped
