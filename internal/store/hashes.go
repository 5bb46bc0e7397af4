package store

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// hsetScript writes fields into a hash in one atomic step: the key's type
// is checked first (a string is never touched), the hash may not grow past
// ARGV[2] fields (then nothing is written), and ARGV[1], when positive, is
// the TTL set in the same step. The reply is {0, PTTL after the write}.
var hsetScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'hash' then return {-3} end
-- The fields a write adds matter only near the bound: below it, even all
-- of them new fit, and counting them (one HMGET, not a HEXISTS a field:
-- a call from Lua costs more than a field) would hold Redis for nothing.
local n = redis.call('HLEN', KEYS[1])
if n + (#ARGV - 2) / 2 > tonumber(ARGV[2]) then
  local names = {}
  for i = 3, #ARGV, 2 do names[#names + 1] = ARGV[i] end
  local added = 0
  for _, v in ipairs(redis.call('HMGET', KEYS[1], unpack(names))) do
    if not v then added = added + 1 end
  end
  if n + added > tonumber(ARGV[2]) then return {-5} end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {0, redis.call('PTTL', KEYS[1])}
`)

// HSet writes fields into the hash at key and, when ttl is positive, sets
// its expiry, in one atomic step, and returns the hash's TTL after the
// write. A write that would take the hash past MAX_HASH_FIELDS fields is
// refused with ErrTooManyItems and writes nothing.
func (s *Store) HSet(ctx context.Context, key string, fields map[string]string, ttl time.Duration) (time.Duration, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	args := make([]any, 0, 2+2*len(fields))
	args = append(args, ttl.Milliseconds(), s.cfg.MaxHashFields)
	for f, v := range fields {
		args = append(args, f, v)
	}
	cmd, err := s.writeScript(ctx, hsetScript, []string{k}, args...)
	reply, err := scriptReply("hset", cmd, err)
	if err != nil {
		return 0, err
	}
	return millis(reply[1]), nil
}

// HashPage is a page of a hash's fields, with the hash's TTL and where the
// next page starts (0 when this is the last).
type HashPage struct {
	Fields map[string]string
	TTL    time.Duration
	Next   uint64
}

// hscanScript reads a page of a hash with HSCAN from cursor ARGV[1]: at
// most ARGV[2] fields, and it stops once the fields' names and values add
// up to ARGV[3] bytes. HSCAN cannot stop inside one of its own steps, so
// each step asks for as many fields as the budget left would hold at the
// average size seen so far (the first step asks for one, to learn it), and
// a page may end one step past its budget; a hash small enough for Redis's
// compact encoding comes whole in one step. The reply is {0, next cursor, PTTL, field, value, ...},
// or -2 for a missing key and -3 for another type.
var hscanScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return {-2} end
if t ~= 'hash' then return {-3} end
local cursor, limit, budget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out, n, bytes = {0, '0', redis.call('PTTL', KEYS[1])}, 0, 0
repeat
  local want = 1
  if n > 0 then want = math.min(limit - n, math.floor((budget - bytes) * n / bytes)) end
  local page = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', math.max(want, 1))
  cursor = page[1]
  for i = 1, #page[2] do
    out[#out + 1] = page[2][i]
    bytes = bytes + #page[2][i]
  end
  n = n + #page[2] / 2
until cursor == '0' or n >= limit or bytes >= budget
out[2] = cursor
return out
`)

// HScan returns a page of the hash at key from cursor (0 to start): up to
// about limit fields (HSCAN's count is a hint), stopping once their names
// and values add up to budget bytes, in one round trip that blocks Redis
// no longer than the page takes.
func (s *Store) HScan(ctx context.Context, key string, cursor uint64, limit, budget int) (HashPage, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	cmd := hscanScript.RunRO(ctx, s.rdb, []string{s.key(key)}, cursor, limit, budget)
	reply, err := scriptReply("hscan", cmd, cmd.Err())
	s.lookup(OpHGetAll, err)
	if err != nil {
		return HashPage{}, err
	}
	next, _ := reply[1].(string)
	page := HashPage{Fields: make(map[string]string, (len(reply)-3)/2), TTL: millis(reply[2])}
	page.Next, _ = strconv.ParseUint(next, 10, 64)
	for i := 3; i+1 < len(reply); i += 2 {
		f, _ := reply[i].(string)
		v, _ := reply[i+1].(string)
		page.Fields[f] = v
	}
	return page, nil
}

// HGet returns one field of the hash at key.
func (s *Store) HGet(ctx context.Context, key, field string) (string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	v, err := s.rdb.HGet(ctx, s.key(key), field).Result()
	err = wrap("hget", err)
	s.lookup(OpHGet, err)
	return v, err
}

// HSetField writes one field of the hash at key, keeping its TTL, within
// MAX_HASH_FIELDS as HSet.
func (s *Store) HSetField(ctx context.Context, key, field, value string) error {
	_, err := s.HSet(ctx, key, map[string]string{field: value}, 0)
	return err
}

// HDelField removes one field of the hash at key; ErrNotFound when the field
// (or the key) does not exist.
func (s *Store) HDelField(ctx context.Context, key, field string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	var cmd *redis.IntCmd
	err := s.write(ctx, k, func(c redis.Cmdable) redis.Cmder {
		cmd = c.HDel(ctx, k, field)
		return cmd
	})
	if err == nil && cmd.Val() == 0 {
		err = redis.Nil
	}
	return wrap("hdel", err)
}
