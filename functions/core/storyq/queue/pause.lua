-- pause: the provider refused work for load (a 429, or overloaded): no claim is served until the
-- pause ends, then one probe at a time (see claim.lua) until an answer ends it (`resume`: DEL).
-- A pause already running is only ever lengthened; one that starts after the last ended
-- unanswered (its probe was refused too) is a strike, and without a wait from the provider
-- each strike doubles the wait.
-- KEYS[1] pause    HASH until, since, strikes, reason, probe
-- ARGV[1] the wait the provider asked for (ms), or -1 when it named none
-- ARGV[2] the wait when the provider names none, at the first strike (ms)
-- ARGV[3] the longest wait taken without the provider's word (ms)
-- ARGV[4] why: the generation error's code (rate_limited, upstream_error, ...)
-- ARGV[5] how long the hash outlives the pause's end unanswered (ms): a deployment that stops
--         working meanwhile does not find a stale pause days later
-- Returns the ms until the pause ends.
local pause = KEYS[1]
local now = now_ms()
local state = redis.call('HMGET', pause, 'until', 'strikes')
local until_ms = tonumber(state[1] or '0') or 0
local strikes = tonumber(state[2] or '0') or 0
local running = now < until_ms
if not running then strikes = strikes + 1 end
local wait = tonumber(ARGV[1])
if wait < 0 then
  wait = math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) * 2 ^ (strikes - 1))
end
local new_until = math.max(until_ms, now + wait)
redis.call('HSET', pause, 'until', fmt_int(new_until), 'strikes', fmt_int(strikes),
  'reason', ARGV[4], 'probe', '0')
if not state[1] then redis.call('HSET', pause, 'since', fmt_int(now)) end
redis.call('PEXPIREAT', pause, fmt_int(new_until + tonumber(ARGV[5])))
return new_until - now
