package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// String is a string value with its remaining time to live (NoExpiry when it
// has none).
type String struct {
	Value string
	// Type is the media type the value was written with (a PUT of its
	// bytes with a Content-Type), "" for a value written as a JSON string
	// or as bytes without a type of their own.
	Type string
	TTL  time.Duration
	// Near is true when the near cache answered, without Redis.
	Near bool
	// stored is what Redis holds: the value, after its type when it has
	// one (see encodeValue).
	stored string
	// tag is Tag(stored) when the near cache already knew it, "" if not.
	tag string
}

// Tag is the value's entity tag: the tag of what Redis holds, type and
// bytes, which is what a conditional write compares in Redis.
func (s String) Tag() string {
	if s.tag != "" {
		return s.tag
	}
	return Tag(s.stored)
}

// newString reads a value as Redis holds it.
func newString(stored string, ttl time.Duration) String {
	value, typ := decodeValue(stored)
	return String{Value: value, Type: typ, TTL: ttl, stored: stored}
}

// typedPrefix begins a value kept with its media type: the prefix, the
// type, a newline, then the bytes. The type lives in the value itself so
// that it shares the value's key, slot and TTL and changes with it in the
// same command, on every topology; a value without a type is stored as it
// is, byte for byte, unless it happens to begin with the prefix (then it
// is kept with an empty type, so that reading it back is never
// ambiguous). The control characters (record and unit separators) make
// the prefix unlikely in text.
const typedPrefix = "\x1edubebox/type\x1f"

// encodeValue is what Redis keeps for value of media type typ.
func encodeValue(value, typ string) string {
	if typ == "" && !strings.HasPrefix(value, typedPrefix) {
		return value
	}
	return typedPrefix + typ + "\n" + value
}

// decodeValue undoes encodeValue. The value is a slice of stored, not a
// copy.
func decodeValue(stored string) (value, typ string) {
	rest, ok := strings.CutPrefix(stored, typedPrefix)
	if !ok {
		return stored, ""
	}
	typ, value, ok = strings.Cut(rest, "\n")
	if !ok {
		// Not written by DubeBox: the bytes as they are.
		return stored, ""
	}
	return value, typ
}

// ValueTag is the entity tag of value written with media type typ, as
// String.Tag will give it when the value is read back.
func ValueTag(value, typ string) string { return Tag(encodeValue(value, typ)) }

// Get returns a string and its TTL in one round trip (a pipeline of GET and
// PTTL).
func (s *Store) Get(ctx context.Context, key string) (String, error) {
	k := s.key(key)
	var stored string
	var pttl time.Duration
	var err error
	read := false
	if s.near != nil && ctx.Value(bypassNear{}) == nil {
		// A hit needs no deadline: it is answered before any timer could
		// matter, and setting one costs more than the lookup.
		if e, ok := s.near.get(k); ok {
			s.lookup(OpGet, nil)
			str := newString(e.value, e.ttl(time.Now()))
			str.Near, str.tag = true, e.tag
			return str, nil
		}
		stored, pttl, read, err = s.near.read(ctx, k, s.cfg.Timeout)
	}
	if !read {
		ctx, cancel := s.ctx(ctx)
		defer cancel()
		stored, pttl, err = getWithTTL(ctx, s.rdb, k)
	}
	if err != nil {
		err = wrap("get", err)
		s.lookup(OpGet, err)
		return String{}, err
	}
	s.lookup(OpGet, nil)
	return newString(stored, remaining(pttl)), nil
}

// pipeliner is what getWithTTL reads through: the store's client, or one
// of the near cache's tracked connections.
type pipeliner interface {
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// getWithTTL reads key's value and PTTL through c in one round trip (a
// pipeline of GET and PTTL). A missing key is redis.Nil.
func getWithTTL(ctx context.Context, c pipeliner, key string) (string, time.Duration, error) {
	var get *redis.StringCmd
	var pttl *redis.DurationCmd
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, key)
		pttl = p.PTTL(ctx, key)
		return nil
	})
	if err == nil || errors.Is(err, redis.Nil) {
		err = get.Err()
	}
	return get.Val(), pttl.Val(), err
}

// Set stores a string of media type typ ("" for none), replacing any
// string at key and its TTL. A zero ttl means no expiry. A key that holds
// another type is left alone and ErrWrongType returned: SET's GET option
// makes Redis itself refuse, in the same command.
func (s *Store) Set(ctx context.Context, key, value, typ string, ttl time.Duration) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	value = encodeValue(value, typ)
	err := s.write(ctx, k, func(c redis.Cmdable) redis.Cmder {
		return c.SetArgs(ctx, k, value, redis.SetArgs{TTL: ttl, Get: true})
	})
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return wrap("set", err)
}

// incrScript adds to the integer at a key, or at a field of a hash, and
// returns the result as Redis keeps it (a string, exact past 2^53).
// ARGV[3] is the field ("" for a string), ARGV[4] the increment.
var incrScript = onceScript(`
if ARGV[3] == '' then
  redis.call('INCRBY', KEYS[1], ARGV[4])
  return {0, redis.call('GET', KEYS[1])}
end
redis.call('HINCRBY', KEYS[1], ARGV[3], ARGV[4])
return {0, redis.call('HGET', KEYS[1], ARGV[3])}
`)

// Incr adds by to the integer at key (created as 0 when missing) and
// returns the result. With once it applies at most once per key (see Once);
// replayed says the result is an earlier write's.
func (s *Store) Incr(ctx context.Context, key string, by int64, once Once) (n int64, replayed bool, err error) {
	return s.incr(ctx, key, "", by, once)
}

// HIncr adds by to the integer in a hash field (created as 0 when missing)
// and returns the result, as Incr.
func (s *Store) HIncr(ctx context.Context, key, field string, by int64, once Once) (n int64, replayed bool, err error) {
	return s.incr(ctx, key, field, by, once)
}

func (s *Store) incr(ctx context.Context, key, field string, by int64, once Once) (int64, bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.key(key)
	op := "incr"
	if field != "" {
		op = "hincrby"
	}
	if once.Key == "" {
		// Without an idempotency key, the plain command is cheaper than
		// the script.
		var cmd *redis.IntCmd
		err := s.write(ctx, k, func(c redis.Cmdable) redis.Cmder {
			if field == "" {
				cmd = c.IncrBy(ctx, k, by)
			} else {
				cmd = c.HIncrBy(ctx, k, field, by)
			}
			return cmd
		})
		return cmd.Val(), false, wrap(op, err)
	}
	reply, replayed, err := s.onceWrite(ctx, op, incrScript, []string{k}, once, field, by)
	if err != nil {
		return 0, false, err
	}
	str, _ := reply[1].(string)
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil {
		return 0, false, wrap(op, errors.Join(err, errInternal))
	}
	return n, replayed, nil
}

// Found is one key's answer in a batch read: the string, or why there is
// none (ErrNotFound, ErrWrongType).
type Found struct {
	String
	Err error
}

// GetMany reads the strings at keys, with their TTLs, in the order given,
// until their values add up to budget bytes: it returns the answers for
// the first keys, whose values fit the budget (the first key's always),
// and the rest are left for another call. It takes two pipelines: the
// lengths first (STRLEN), then the values of the keys that fit, so that
// no more than the budget (and one value) is ever read into memory. On a
// Cluster go-redis sends each node the commands for its slots, in
// parallel, so keys of different slots never meet in one command (no
// CROSSSLOT). A key that is missing or holds another type is reported in
// its Found; only a failure of Redis itself fails the whole read.
func (s *Store) GetMany(ctx context.Context, keys []string, budget int) ([]Found, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	lens := make([]*redis.IntCmd, len(keys))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, key := range keys {
			lens[i] = p.StrLen(ctx, s.key(key))
		}
		return nil
	})
	if err != nil && !errors.Is(classify(err), ErrWrongType) {
		return nil, wrap("strlen", err)
	}
	n, total := 0, int64(0)
	for n < len(keys) {
		total += lens[n].Val()
		if n > 0 && total > int64(budget) {
			break
		}
		n++
	}
	gets := make([]*redis.StringCmd, n)
	pttls := make([]*redis.DurationCmd, n)
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, key := range keys[:n] {
			gets[i] = p.Get(ctx, s.key(key))
			pttls[i] = p.PTTL(ctx, s.key(key))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) && !errors.Is(classify(err), ErrWrongType) {
		return nil, wrap("get", err)
	}
	out := make([]Found, n)
	for i := range n {
		err := wrap("get", gets[i].Err())
		switch {
		case err == nil:
			out[i] = Found{String: newString(gets[i].Val(), remaining(pttls[i].Val()))}
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrWrongType):
			out[i] = Found{Err: err}
		default:
			return nil, err
		}
		s.lookup(OpGet, out[i].Err)
	}
	return out, nil
}
