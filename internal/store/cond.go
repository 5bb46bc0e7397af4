package store

import (
	"context"
	"crypto/sha1" //nolint:gosec // an entity tag, not a secret: Redis's Lua has SHA-1 (redis.sha1hex), so the tag can be checked inside the write's own atomic step.
	"encoding/hex"
	"errors"
	"io"
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
	h := sha1.New() //nolint:gosec // see the import.
	// WriteString hashes the string where it is: []byte(value) would copy
	// it, a megabyte for a large value.
	_, _ = io.WriteString(h, value)
	return hex.EncodeToString(h.Sum(nil))
}

// Condition is a write's precondition, HTTP's If-None-Match: * (Absent) or
// If-Match: * (Exists: any value) or If-Match with tags (Match: the tags
// any one of which the current value must have).
type Condition struct {
	Absent bool
	Exists bool
	Match  []string
}

// condScript makes one write to a string, or to one field of a hash, only
// when its condition holds, comparing in the same atomic step. ARGV[2] is
// the condition: "absent", "exists", or "match" with the tags (hex SHA-1,
// comma-separated) in ARGV[3]. The reply is {-3} when the key holds
// another type, {-4} when the condition failed, {-5} when a new field
// would take the hash past ARGV[8] fields, else {0}.
var condScript = redis.NewScript(`
local kind, cond, tags, op, field, value, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= kind then return {-3} end
local cur = false
if t ~= 'none' then
  if kind == 'string' then cur = redis.call('GET', KEYS[1]) else cur = redis.call('HGET', KEYS[1], field) end
end
if cond == 'absent' then
  if cur then return {-4} end
else
  if not cur then return {-4} end
  if cond == 'match' then
    local tag, ok = redis.sha1hex(cur), false
    for want in string.gmatch(tags, '[^,]+') do
      if want == tag then ok = true end
    end
    if not ok then return {-4} end
  end
end
if op == 'set' then
  if kind == 'hash' then
    if not cur and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[8]) then return {-5} end
    redis.call('HSET', KEYS[1], field, value)
  elseif ttl > 0 then redis.call('SET', KEYS[1], value, 'PX', ttl)
  else redis.call('SET', KEYS[1], value) end
  return {0}
end
if kind == 'hash' then redis.call('HDEL', KEYS[1], field) else redis.call('UNLINK', KEYS[1]) end
return {0}
`)

// SetIf stores a string, as Set does, only when cond holds.
func (s *Store) SetIf(ctx context.Context, key, value, typ string, ttl time.Duration, cond Condition) error {
	return s.condWrite(ctx, key, TypeString, "set", "", encodeValue(value, typ), ttl, cond)
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

func (s *Store) condWrite(ctx context.Context, key, typ, op, field, value string, ttl time.Duration, cond Condition) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	kind := "match"
	switch {
	case cond.Absent:
		kind = "absent"
	case cond.Exists:
		kind = "exists"
	}
	args := []any{typ, kind, strings.Join(cond.Match, ","), op, field, value, ttl.Milliseconds(), s.cfg.MaxHashFields}
	cmd, err := s.writeScript(ctx, condScript, []string{k}, args...)
	reply, err := scriptReply(op, cmd, err)
	if err != nil {
		return err
	}
	if reply[0] == int64(-4) {
		return ErrPreconditionFailed
	}
	return nil
}
