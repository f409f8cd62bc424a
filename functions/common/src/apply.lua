-- tally's atomic step for one batch of one shard (docs/counter-store.md, "What a batch does").
-- Reference semantics: tally_domain::store_model::MemoryStore::apply_atomic; arguments:
-- tally_domain::exactly_once::ApplyPlan::script_keys / script_args.
--
-- KEYS[1]          the shard's fence mark (string)
-- KEYS[2..C+1]     one counter hash per (campaign, minute)
-- KEYS[C+2..C+I+1] one index set per minute
-- ARGV  expected mark ('' = none), new mark, TTL seconds of counters and indexes (0 = none), C, I,
--       then per hash: n, n pairs (field, increment), m, m pairs (register field, rank);
--       then per set: n, n members.
-- A register field keeps the highest rank it was given (the unique-user sketch's maximum): applying the same
-- pair again changes nothing.
-- Every key is named in KEYS and carries the tag {<lane>:<shard>}: one hash slot (ElastiCache Serverless
-- refuses scripts that build key names).
-- Reply: {1} applied; {0, current mark or ''} when the stored mark is not the expected one (nothing changed).
local ttl = tonumber(ARGV[3])
local nh = tonumber(ARGV[4])
local ns = tonumber(ARGV[5])
if not (ttl and nh and ns) or #KEYS ~= 1 + nh + ns then
  return redis.error_reply('ERR apply: ' .. #KEYS .. ' keys do not match 1 mark + ARGV[4] hashes + ARGV[5] sets')
end
if ARGV[2] == '' then
  return redis.error_reply('ERR apply: empty new mark')
end
local cur = redis.call('GET', KEYS[1])
if not cur then cur = '' end
if cur ~= ARGV[1] then
  return {0, cur}
end
local a = 6
for h = 1, nh do
  local k = KEYS[1 + h]
  local n = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, n do
    redis.call('HINCRBY', k, ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  local m = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, m do
    local rank = tonumber(ARGV[a + 1])
    local cur = tonumber(redis.call('HGET', k, ARGV[a]) or '0')
    if rank > cur then
      redis.call('HSET', k, ARGV[a], ARGV[a + 1])
    end
    a = a + 2
  end
  if ttl > 0 then
    redis.call('EXPIRE', k, ttl, 'NX')
  end
end
for s = 1, ns do
  local k = KEYS[1 + nh + s]
  local n = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, n do
    redis.call('SADD', k, ARGV[a])
    a = a + 1
  end
  if ttl > 0 then
    redis.call('EXPIRE', k, ttl, 'NX')
  end
end
redis.call('SET', KEYS[1], ARGV[2])
return {1}
