package store

import (
	"context"
	"crypto/sha1" //nolint:gosec // an entity tag, not a secret: Redis's Lua has SHA-1 (redis.sha1hex), so the tag can be checked inside the write's own atomic step.
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrPreconditionFailed means a conditional write found the key (or the
// field) not as its condition required: present for a create-only write, or
// with another value than the one the writer read.
var ErrPreconditionFailed = errors.New("precondition failed")

// Tag is a value's entity tag: the hex SHA-1 of its bytes, what Redis's
// redis.sha1hex computes, so that a write can compare it atomically.
func Tag(value string) string {
	sum := sha1.Sum([]byte(value)) //nolint:gosec // see the import.
	return hex.EncodeToString(sum[:])
}

// Condition is a write's precondition, HTTP's If-None-Match: * (Absent) or
// If-Match (Match: the tags any one of which the current value must have,
// or "*" for any value).
type Condition struct {
	Absent bool
	Match  []string
}

// condScript makes one write to a string, or to one field of a hash, only
// when its condition holds, comparing in the same atomic step: -3 means the
// key holds another type, -4 the condition failed, else the write's count.
var condScript = redis.NewScript(`
local kind, absent, tags, op, field, value, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= kind then return -3 end
local cur = false
if t ~= 'none' then
  if kind == 'string' then cur = redis.call('GET', KEYS[1]) else cur = redis.call('HGET', KEYS[1], field) end
end
if absent == '1' then
  if cur then return -4 end
else
  if not cur then return -4 end
  local tag, ok = redis.sha1hex(cur), false
  for want in string.gmatch(tags, '[^,]+') do
    if want == '*' or want == tag then ok = true end
  end
  if not ok then return -4 end
end
if op == 'set' then
  if kind == 'hash' then return redis.call('HSET', KEYS[1], field, value) end
  if ttl > 0 then redis.call('SET', KEYS[1], value, 'PX', ttl) else redis.call('SET', KEYS[1], value) end
  return 1
end
if kind == 'hash' then return redis.call('HDEL', KEYS[1], field) end
return redis.call('DEL', KEYS[1])
`)

// SetIf stores a string, as Set does, only when cond holds.
func (s *Store) SetIf(ctx context.Context, key, value string, ttl time.Duration, cond Condition) error {
	return s.condWrite(ctx, key, TypeString, "set", "", value, ttl, cond)
}

// DeleteIf deletes a string only when cond holds.
func (s *Store) DeleteIf(ctx context.Context, key string, cond Condition) error {
	return s.condWrite(ctx, key, TypeString, "del", "", "", 0, cond)
}

// HSetFieldIf writes one field of a hash only when cond holds for it.
func (s *Store) HSetFieldIf(ctx context.Context, key, field, value string, cond Condition) error {
	return s.condWrite(ctx, key, TypeHash, "set", field, value, 0, cond)
}

// HDelFieldIf deletes one field of a hash only when cond holds for it.
func (s *Store) HDelFieldIf(ctx context.Context, key, field string, cond Condition) error {
	return s.condWrite(ctx, key, TypeHash, "del", field, "", 0, cond)
}

func (s *Store) condWrite(ctx context.Context, key, kind, op, field, value string, ttl time.Duration, cond Condition) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	absent := "0"
	if cond.Absent {
		absent = "1"
	}
	args := []any{kind, absent, strings.Join(cond.Match, ","), op, field, value, ttl.Milliseconds()}
	cmd, err := s.writeScript(ctx, condScript, k, args...)
	var n int64
	if err == nil {
		n, err = cmd.Int64()
	}
	switch {
	case err != nil:
		return wrap(op, err)
	case n == -3:
		return ErrWrongType
	case n == -4:
		return ErrPreconditionFailed
	}
	return nil
}
