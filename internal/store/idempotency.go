package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Once is a write's idempotency key (HTTP's Idempotency-Key): the first
// write sent with it applies, and its outcome is kept beside the data for
// IDEMPOTENCY_TTL; a retry with the same key, concurrent or later, is
// given that outcome and applies nothing. The zero Once is a write without
// one.
type Once struct {
	Key string
}

// ErrIdempotencyKeyReused means a write came with an idempotency key that
// an earlier write of the same key, with other arguments, already used.
// Nothing was written.
var ErrIdempotencyKeyReused = errors.New("idempotency key used by another write")

// ErrNoIdempotencyRecord means the key cannot keep an idempotency record in
// its own Cluster slot (see recordKey). Nothing was written.
var ErrNoIdempotencyRecord = errors.New("this key cannot take an idempotency key")

// recordKey is where the idempotency record of a write to the full key k
// lives. It must share k's Cluster slot, so that one script checks it and
// writes both atomically on every topology; and it holds a '/', which no
// key of the API may, so that it never collides with a key a client
// writes. When k has a hash tag ({...}), the record extends k and keeps
// that tag. Otherwise k itself becomes the record's tag, which needs k to
// hold no '}'; a key with a '}' and no hash tag cannot take a record
// (ErrNoIdempotencyRecord).
func recordKey(k, id string) (string, error) {
	if open := strings.IndexByte(k, '{'); open >= 0 {
		if end := strings.IndexByte(k[open+1:], '}'); end > 0 {
			return k + "/idem/" + id, nil
		}
	}
	if strings.IndexByte(k, '}') >= 0 {
		return "", ErrNoIdempotencyRecord
	}
	return "{" + k + "}/idem/" + id, nil
}

// onceScript wraps a write script's body so that it honours an
// idempotency record, checked and written in the same atomic step as the
// write. The body sees its keys from KEYS[1] and its own arguments from
// ARGV[3] on, and returns a table whose first element is 0 when it wrote
// (then the table is the outcome, kept in the record) or a negative code
// when it did not (the shared codes of scriptReply). With a record key as
// the last key (ARGV[1] the write's fingerprint, not empty, ARGV[2] the
// record's TTL in milliseconds), a record found answers -6 when its
// fingerprint differs, and otherwise its outcome with a first element of
// 1: a replay. Outcomes are kept as JSON (cjson): strings as they are,
// numbers below 10^14.
func onceScript(body string) *redis.Script {
	return redis.NewScript(`
local record = ARGV[1] ~= '' and KEYS[#KEYS]
if record then
  local rec = redis.call('GET', record)
  if rec then
    local nl = string.find(rec, '\n', 1, true)
    if string.sub(rec, 1, nl - 1) ~= ARGV[1] then return {-6} end
    local out = cjson.decode(string.sub(rec, nl + 1))
    out[1] = 1
    return out
  end
end
local function op()
` + body + `
end
local out = op()
if record and out[1] == 0 then
  redis.call('SET', record, ARGV[1] .. '\n' .. cjson.encode(out), 'PX', ARGV[2])
end
return out
`)
}

// onceWrite runs a onceScript on the full keys with the script's own
// args, with once's record (beside the first key) when it has one, and
// returns the reply past the shared codes and whether it was a replay.
func (s *Store) onceWrite(ctx context.Context, op string, script *redis.Script, keys []string, once Once, args ...any) ([]any, bool, error) {
	fp := ""
	if once.Key != "" {
		rec, err := recordKey(keys[0], once.Key)
		if err != nil {
			return nil, false, err
		}
		keys = append(keys[:len(keys):len(keys)], rec)
		fp = fingerprint(op, args)
	}
	all := append([]any{fp, s.cfg.IdempotencyTTL.Milliseconds()}, args...)
	cmd, err := s.writeScript(ctx, script, keys, all...)
	reply, err := scriptReply(op, cmd, err)
	if err != nil {
		return nil, false, err
	}
	if reply[0] == int64(-6) {
		return nil, false, ErrIdempotencyKeyReused
	}
	return reply, reply[0] == int64(1), nil
}

// fingerprint tells one write's arguments from another's, so that an
// idempotency key reused for another write is refused rather than given
// the first write's outcome.
func fingerprint(op string, args []any) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s", op)
	for _, a := range args {
		fmt.Fprintf(h, "\x00%v", a)
	}
	return hex.EncodeToString(h.Sum(nil))
}
