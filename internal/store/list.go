package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The ends of a list.
const (
	Head = "head"
	Tail = "tail"
)

// The list reads named to a LookupRecorder.
const (
	OpLRange = "lrange"
	OpLLen   = "llen"
)

// List is a page of a list, with the list's length and TTL.
type List struct {
	Values []string
	Length int64
	TTL    time.Duration
}

// listScript runs one list write in one atomic step, on a key that holds a
// list (or, for a push, nothing yet): -2 means missing, -3 another type.
// A push sets the TTL in the same step; a pop, remove or trim that empties
// the list removes the key, as Redis does.
var listScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
local op = ARGV[1]
if t ~= 'list' then
  if t ~= 'none' then return {-3} end
  if op ~= 'push' then return {-2} end
end
if op == 'push' then
  local n = redis.call(ARGV[2], KEYS[1], unpack(ARGV, 4))
  if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
  return {n, redis.call('PTTL', KEYS[1])}
elseif op == 'pop' then
  local vals = redis.call(ARGV[2], KEYS[1], ARGV[3])
  return {redis.call('LLEN', KEYS[1]), vals}
elseif op == 'rem' then
  local n = redis.call('LREM', KEYS[1], ARGV[2], ARGV[3])
  return {redis.call('LLEN', KEYS[1]), n}
end
redis.call('LTRIM', KEYS[1], ARGV[2], ARGV[3])
return {redis.call('LLEN', KEYS[1])}
`)

// listWrite runs listScript and returns its reply after the status code.
func (s *Store) listWrite(ctx context.Context, key string, args ...any) ([]any, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	cmd, err := s.writeScript(ctx, listScript, k, args...)
	op := "list " + fmt.Sprint(args[0])
	if err != nil {
		return nil, wrap(op, err)
	}
	reply, err := cmd.Slice()
	if err != nil || len(reply) == 0 {
		return nil, wrap(op, fmt.Errorf("unexpected reply %v: %w", cmd.Val(), errors.Join(err, errInternal)))
	}
	switch reply[0] {
	case int64(-2):
		return nil, wrap(op, redis.Nil)
	case int64(-3):
		return nil, ErrWrongType
	}
	return reply, nil
}

// Push adds values at one end of the list at key (created if missing), in
// their order, and when ttl is positive sets its expiry in the same step.
// It returns the list's length and TTL after the write.
func (s *Store) Push(ctx context.Context, key, end string, values []string, ttl time.Duration) (int64, time.Duration, error) {
	cmd := "RPUSH"
	if end == Head {
		cmd = "LPUSH"
	}
	args := append(make([]any, 0, 3+len(values)), "push", cmd, ttl.Milliseconds())
	for _, v := range values {
		args = append(args, v)
	}
	reply, err := s.listWrite(ctx, key, args...)
	if err != nil {
		return 0, 0, err
	}
	n, _ := reply[0].(int64)
	pttl, _ := reply[1].(int64)
	return n, remaining(time.Duration(pttl) * time.Millisecond), nil
}

// Pop removes up to count values from one end of the list and returns them
// with the length left; the key goes with its last value.
func (s *Store) Pop(ctx context.Context, key, end string, count int) ([]string, int64, error) {
	cmd := "RPOP"
	if end == Head {
		cmd = "LPOP"
	}
	reply, err := s.listWrite(ctx, key, "pop", cmd, count)
	if err != nil {
		return nil, 0, err
	}
	n, _ := reply[0].(int64)
	raw, _ := reply[1].([]any)
	values := make([]string, 0, len(raw))
	for _, v := range raw {
		str, _ := v.(string)
		values = append(values, str)
	}
	return values, n, nil
}

// Remove removes values equal to value: count > 0 the first count from the
// head, < 0 from the tail, 0 all. It returns how many went and the length
// left.
func (s *Store) Remove(ctx context.Context, key, value string, count int64) (removed, length int64, err error) {
	reply, err := s.listWrite(ctx, key, "rem", count, value)
	if err != nil {
		return 0, 0, err
	}
	length, _ = reply[0].(int64)
	removed, _ = reply[1].(int64)
	return removed, length, nil
}

// Trim keeps the values from start to stop (inclusive, zero-based; negative
// counts from the tail, as LTRIM does) and returns the length left.
func (s *Store) Trim(ctx context.Context, key string, start, stop int64) (int64, error) {
	reply, err := s.listWrite(ctx, key, "trim", start, stop)
	if err != nil {
		return 0, err
	}
	n, _ := reply[0].(int64)
	return n, nil
}

// Range returns limit values of the list from offset, with the list's
// length and TTL, in one round trip. A missing key is ErrNotFound; an
// offset past the end is an empty page of an existing list.
func (s *Store) Range(ctx context.Context, key string, offset, limit int64) (List, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	var values *redis.StringSliceCmd
	var length *redis.IntCmd
	var pttl *redis.DurationCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		values = p.LRange(ctx, k, offset, offset+limit-1)
		length = p.LLen(ctx, k)
		pttl = p.PTTL(ctx, k)
		return nil
	})
	if err == nil && length.Val() == 0 {
		err = redis.Nil
	}
	err = wrap("lrange", err)
	s.lookup(OpLRange, err)
	if err != nil {
		return List{}, err
	}
	return List{Values: values.Val(), Length: length.Val(), TTL: remaining(pttl.Val())}, nil
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
