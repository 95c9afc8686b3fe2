-- counts: the sizes of the queue for the admin view. Read-only.
-- KEYS[1] waiting  ZSET
-- KEYS[2] active   ZSET
-- KEYS[3] delayed  ZSET
-- KEYS[4] stats    HASH mean_seconds
-- (held jobs are the waiting ones scored at HELD_OFFSET or more: common.lua)
-- Returns {waiting count (held ones included), active count, delayed count, mean seconds or
-- '', held count}.
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]),
  redis.call('HGET', KEYS[4], 'mean_seconds') or '',
  redis.call('ZCOUNT', KEYS[1], fmt_int(HELD_OFFSET), '+inf')}
