-- counts: the sizes of the queue for the admin view. Read-only.
-- KEYS[1] waiting  ZSET
-- KEYS[2] active   ZSET
-- KEYS[3] delayed  ZSET
-- KEYS[4] stats    HASH mean_seconds
-- KEYS[5] held     ZSET
-- Returns {waiting count (held ones included), active count, delayed count, mean seconds or
-- '', held count}.
local held = redis.call('ZCARD', KEYS[5])
return {redis.call('ZCARD', KEYS[1]) + held, redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]), redis.call('HGET', KEYS[4], 'mean_seconds') or '', held}
