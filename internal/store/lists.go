package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// The ends of a list.
const (
	Head = "head"
	Tail = "tail"
)

// List is a page of a list, with the list's length and TTL.
type List struct {
	Values []string
	Length int64
	TTL    time.Duration
}

// listScript runs one list write in one atomic step (see onceScript for
// the idempotency record and the codes), on a key that holds a list (or,
// for a push, nothing yet). ARGV[3] is the operation:
//
//	push: ARGV[4] LPUSH or RPUSH, ARGV[5] the TTL in ms (0 keeps it),
//	      ARGV[6] the bound on the list's length, then the values; the
//	      TTL is set in the same step; {0, length, PTTL}.
//	pop:  ARGV[4] LPOP or RPOP, ARGV[5] how many, ARGV[6] a byte budget:
//	      values are taken one by one until that many, or until the next
//	      would take them past the budget (one always goes);
//	      {0, length left, {values}}.
//	rem:  ARGV[4] count, ARGV[5] the value (LREM); {0, length, removed}.
//	trim: ARGV[4] start, ARGV[5] stop (LTRIM); {0, length}.
//
// A pop, remove or trim that empties the list removes the key, as Redis
// does.
var listScript = onceScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
local op = ARGV[3]
if t ~= 'list' then
  if t ~= 'none' then return {-3} end
  if op ~= 'push' then return {-2} end
end
if op == 'push' then
  if redis.call('LLEN', KEYS[1]) + #ARGV - 6 > tonumber(ARGV[6]) then return {-5} end
  local n = redis.call(ARGV[4], KEYS[1], unpack(ARGV, 7))
  if tonumber(ARGV[5]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
  return {0, n, redis.call('PTTL', KEYS[1])}
elseif op == 'pop' then
  local vals, bytes, budget = {}, 0, tonumber(ARGV[6])
  local peek = 0
  if ARGV[4] == 'RPOP' then peek = -1 end
  for i = 1, tonumber(ARGV[5]) do
    if i > 1 then
      local next = redis.call('LINDEX', KEYS[1], peek)
      if not next or bytes + #next > budget then break end
    end
    local v = redis.call(ARGV[4], KEYS[1])
    if not v then break end
    vals[#vals + 1] = v
    bytes = bytes + #v
  end
  return {0, redis.call('LLEN', KEYS[1]), vals}
elseif op == 'rem' then
  local n = redis.call('LREM', KEYS[1], ARGV[4], ARGV[5])
  return {0, redis.call('LLEN', KEYS[1]), n}
end
redis.call('LTRIM', KEYS[1], ARGV[4], ARGV[5])
return {0, redis.call('LLEN', KEYS[1])}
`)

// listWrite runs listScript with the operation's arguments and returns
// its reply past the shared codes.
func (s *Store) listWrite(ctx context.Context, key string, once Once, args ...any) ([]any, bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.onceWrite(ctx, "list "+args[0].(string), listScript, []string{s.key(key)}, once, args...)
}

// Push adds values at one end of the list at key (created if missing), in
// their order, and when ttl is positive sets its expiry in the same step.
// It returns the list's length and TTL after the write. A push that would
// take the list past MAX_LIST_LENGTH values is refused with
// ErrTooManyItems. With once it applies at most once (see Once).
func (s *Store) Push(ctx context.Context, key, end string, values []string, ttl time.Duration, once Once) (length int64, left time.Duration, replayed bool, err error) {
	cmd := "RPUSH"
	if end == Head {
		cmd = "LPUSH"
	}
	args := append(make([]any, 0, 4+len(values)), "push", cmd, ttl.Milliseconds(), s.cfg.MaxListLength)
	for _, v := range values {
		args = append(args, v)
	}
	reply, replayed, err := s.listWrite(ctx, key, once, args...)
	if err != nil {
		return 0, 0, false, err
	}
	n, _ := reply[1].(int64)
	return n, millis(reply[2]), replayed, nil
}

// Pop removes up to count values from one end of the list, stopping before
// a value that would take what it took past budget bytes (it always takes
// one), and returns them with the length left; the key goes with its last
// value. With once it applies at most once (see Once).
func (s *Store) Pop(ctx context.Context, key, end string, count, budget int, once Once) (values []string, length int64, replayed bool, err error) {
	cmd := "RPOP"
	if end == Head {
		cmd = "LPOP"
	}
	reply, replayed, err := s.listWrite(ctx, key, once, "pop", cmd, count, budget)
	if err != nil {
		return nil, 0, false, err
	}
	n, _ := reply[1].(int64)
	return stringsOf(reply[2]), n, replayed, nil
}

// stringsOf reads a script's array of strings.
func stringsOf(v any) []string {
	raw, _ := v.([]any)
	out := make([]string, 0, len(raw))
	for _, e := range raw {
		str, _ := e.(string)
		out = append(out, str)
	}
	return out
}

// Remove removes values equal to value: count > 0 the first count from the
// head, < 0 from the tail, 0 all. It returns how many went and the length
// left.
func (s *Store) Remove(ctx context.Context, key, value string, count int64) (removed, length int64, err error) {
	reply, _, err := s.listWrite(ctx, key, Once{}, "rem", count, value)
	if err != nil {
		return 0, 0, err
	}
	length, _ = reply[1].(int64)
	removed, _ = reply[2].(int64)
	return removed, length, nil
}

// Trim keeps the values from start to stop (inclusive, zero-based; negative
// counts from the tail, as LTRIM does) and returns the length left.
func (s *Store) Trim(ctx context.Context, key string, start, stop int64) (int64, error) {
	reply, _, err := s.listWrite(ctx, key, Once{}, "trim", start, stop)
	if err != nil {
		return 0, err
	}
	n, _ := reply[1].(int64)
	return n, nil
}

// rangeScript reads a page of a list from offset ARGV[1]: at most ARGV[2]
// values, and it stops before a value that would take the page past ARGV[3]
// bytes (one always comes). It reads in steps: the first of one value,
// each next of as many as the budget left would hold at the average size
// seen so far (at most 64), so that Redis copies little more than the
// page. The reply is {0, length, PTTL, value, ...}, or -2 for a missing
// key and -3 for another type.
var rangeScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return {-2} end
if t ~= 'list' then return {-3} end
local from, limit, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local len = redis.call('LLEN', KEYS[1])
local out, bytes, at = {0, len, redis.call('PTTL', KEYS[1])}, 0, from
while at < len and at - from < limit do
  local n, want = at - from, 1
  if n > 0 then want = math.max(1, math.min(64, limit - n, math.floor((budget - bytes) * n / math.max(bytes, 1)))) end
  local step = redis.call('LRANGE', KEYS[1], at, at + want - 1)
  for _, v in ipairs(step) do
    if at > from and bytes + #v > budget then return out end
    out[#out + 1] = v
    bytes = bytes + #v
    at = at + 1
  end
end
return out
`)

// Range returns up to limit values of the list from offset, stopping
// before a value that would take them past budget bytes (one always
// comes), with the list's length and TTL, in one round trip. A missing key
// is ErrNotFound; an offset past the end is an empty page of an existing
// list.
func (s *Store) Range(ctx context.Context, key string, offset, limit int64, budget int) (List, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	cmd := rangeScript.RunRO(ctx, s.rdb, []string{s.key(key)}, offset, limit, budget)
	reply, err := scriptReply("lrange", cmd, cmd.Err())
	s.lookup(OpLRange, err)
	if err != nil {
		return List{}, err
	}
	n, _ := reply[1].(int64)
	return List{Values: stringsOf(reply[3:]), Length: n, TTL: millis(reply[2])}, nil
}

// Len returns the list's length.
func (s *Store) Len(ctx context.Context, key string) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := s.rdb.LLen(ctx, s.key(key)).Result()
	if err == nil && n == 0 {
		err = redis.Nil
	}
	err = wrap("llen", err)
	s.lookup(OpLLen, err)
	return n, err
}
