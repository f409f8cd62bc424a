-- tally's atomic step for one batch of one shard (docs/counter-store.md, "What a batch does").
-- Reference semantics: tally_domain::store_model::MemoryStore::apply_atomic; arguments:
-- tally_domain::exactly_once::ApplyPlan::script_keys / script_args.
--
-- KEYS[1]          the shard's fence mark (string)
-- KEYS[2..C+1]     one counter hash per (campaign, minute), ordered by minute, then campaign
-- KEYS[C+2..C+I+1] one index set per minute, in the same minute order
-- ARGV  expected mark ('' = none), new mark, TTL seconds of counters and indexes (0 = none), C, I,
--       then per hash: n, n pairs (field, increment), m, m pairs (register field, rank);
--       then per set: n, n members — the campaigns of the next n hashes, in KEYS order (the n counts add up
--       to C).
-- A register field keeps the highest rank it was given (the unique-user sketch's maximum): applying the same
-- pair again changes nothing.
-- A hash is *new* when its first field did not exist before this step (HINCRBY returns exactly the
-- increment) or it has no field: only then does it get its TTL (EXPIRE NX) and its campaign join the minute's
-- index set, and the set's TTL is moved to now + TTL, so the set outlives every hash it lists. A hash that
-- already had its first field was created, given its TTL and listed by an earlier step: those two commands
-- per hash are saved (docs/counter-store.md, "Only new hashes are listed").
-- Every key is named in KEYS and carries the tag {<lane>:<shard>}: one hash slot (ElastiCache Serverless
-- refuses scripts that build key names).
-- Every argument is checked before the first write; the reply: {1} applied; {0, current mark or ''} when the
-- stored mark is not the expected one (nothing changed).
local ttl = tonumber(ARGV[3])
local nh = tonumber(ARGV[4])
local ns = tonumber(ARGV[5])
if not (ttl and nh and ns) or #KEYS ~= 1 + nh + ns then
  return redis.error_reply('ERR apply: ' .. #KEYS .. ' keys do not match 1 mark + ARGV[4] hashes + ARGV[5] sets')
end
if ARGV[2] == '' then
  return redis.error_reply('ERR apply: empty new mark')
end
-- Where each hash's arguments start, and where the sets' start.
local at = {}
local a = 6
for h = 1, nh do
  at[h] = a
  local n = tonumber(ARGV[a])
  if not n then return redis.error_reply('ERR apply: field count of hash ' .. h .. ' is not a number') end
  a = a + 1 + 2 * n
  local m = tonumber(ARGV[a])
  if not m then return redis.error_reply('ERR apply: register count of hash ' .. h .. ' is not a number') end
  a = a + 1 + 2 * m
end
local sets_at = a
local listed = 0
for s = 1, ns do
  local n = tonumber(ARGV[a])
  if not n or n < 1 then return redis.error_reply('ERR apply: member count of set ' .. s .. ' is not a positive number') end
  listed = listed + n
  a = a + 1 + n
end
if listed ~= nh or a ~= #ARGV + 1 then
  return redis.error_reply('ERR apply: the sets list ' .. listed .. ' hashes of ' .. nh .. ', arguments end at ' .. (a - 1) .. ' of ' .. #ARGV)
end
local cur = redis.call('GET', KEYS[1])
if not cur then cur = '' end
if cur ~= ARGV[1] then
  return {0, cur}
end
local h = 0
a = sets_at
for s = 1, ns do
  local set = KEYS[1 + nh + s]
  local n = tonumber(ARGV[a])
  a = a + 1
  local added = false
  for j = 1, n do
    h = h + 1
    local k = KEYS[1 + h]
    local b = at[h]
    local nf = tonumber(ARGV[b])
    b = b + 1
    local new = nf == 0
    for f = 1, nf do
      local total = redis.call('HINCRBY', k, ARGV[b], ARGV[b + 1])
      if f == 1 and total == tonumber(ARGV[b + 1]) then new = true end
      b = b + 2
    end
    local m = tonumber(ARGV[b])
    b = b + 1
    for _ = 1, m do
      local rank = tonumber(ARGV[b + 1])
      local cur = tonumber(redis.call('HGET', k, ARGV[b]) or '0')
      if rank > cur then
        redis.call('HSET', k, ARGV[b], ARGV[b + 1])
      end
      b = b + 2
    end
    if new then
      if ttl > 0 then
        redis.call('EXPIRE', k, ttl, 'NX')
      end
      redis.call('SADD', set, ARGV[a + j - 1])
      added = true
    end
  end
  a = a + n
  if added and ttl > 0 then
    redis.call('EXPIRE', set, ttl)
  end
end
redis.call('SET', KEYS[1], ARGV[2])
return {1}
