package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sigurn/crc16"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// The operations of a transaction.
const (
	TxSet    = "set"
	TxDelete = "delete"
	TxIncr   = "incr"
	TxExpire = "expire"
	TxHSet   = "hset"
	TxHDel   = "hdel"
	TxHIncr  = "hincr"
	TxPush   = "push"
)

// TxOp is one operation of a transaction, on one key, with its
// precondition. Which fields count depends on Op: Value and TTL (set), By
// (incr, hincr), TTL (expire: 0 removes the TTL), Fields as name, value
// pairs (hset), Names (hdel; hincr's field is Names[0]), Values and End
// (push).
type TxOp struct {
	Op     string
	Key    string
	Value  string
	TTL    time.Duration
	By     int64
	Fields []string
	Names  []string
	Values []string
	End    string
	If     TxCondition
}

// TxCondition is an operation's precondition, checked against the key as
// the operations before it in the transaction leave it: the Condition of
// a conditional write (Match: the entity tags one of which the string at
// the key must have; Exists: the key exists, of any type; Absent: it does
// not), and Type, when set, the type the key must hold (TypeString,
// TypeHash, TypeList).
type TxCondition struct {
	Condition
	Type string
}

// TxResult is what one operation did: Int is the new value (incr, hincr),
// the count (delete: 1 when there was a key; hset: fields added; hdel:
// fields removed; push: the list's length); Tag is the new value's entity
// tag (set).
type TxResult struct {
	Int int64
	Tag string
}

// TxError is why a transaction wrote nothing: Err (ErrPreconditionFailed,
// ErrWrongType, ErrNotFound, ErrNotInteger, ErrTooManyItems) happened at
// operation Index.
type TxError struct {
	Index int
	Err   error
}

func (e *TxError) Error() string { return fmt.Sprintf("operation %d: %v", e.Index, e.Err) }

func (e *TxError) Unwrap() error { return e.Err }

// ErrCrossSlot means a transaction's keys map to more than one Redis
// Cluster slot, which one script cannot touch. Nothing was written.
var ErrCrossSlot = errors.New("keys in more than one cluster slot")

// CrossSlotError names the slot of each key of a transaction that spans
// several (ErrCrossSlot).
type CrossSlotError struct {
	Keys  []string
	Slots []int
}

func (e *CrossSlotError) Error() string { return ErrCrossSlot.Error() }

func (e *CrossSlotError) Unwrap() error { return ErrCrossSlot }

// Slot is the Redis Cluster slot of an API key: CRC16 (XMODEM) of the
// key's hash tag, the part between the first { and the next }, when there
// is one and it is not empty, else of the whole key (with the store's
// prefix), modulo 16384.
func (s *Store) Slot(key string) int {
	k := s.key(key)
	if open := strings.IndexByte(k, '{'); open >= 0 {
		if end := strings.IndexByte(k[open+1:], '}'); end > 0 {
			k = k[open+1 : open+1+end]
		}
	}
	return int(crc16.Checksum([]byte(k), xmodem) % 16384)
}

var xmodem = crc16.MakeTable(crc16.CRC16_XMODEM)

// txScript applies a transaction's operations all or nothing: it checks
// every precondition, type and bound first, against a model of the keys as
// the operations before each leave them, and writes only when all hold, as
// Redis does not roll a script back. ARGV[3] is how many data keys there
// are (an idempotency record may follow them, see onceScript), ARGV[4] and
// ARGV[5] MAX_HASH_FIELDS and MAX_LIST_LENGTH, then each operation as: its
// key's index, its name, the tags of if_match (comma-separated; * for any
// value), "1" for if_none_match, the if_type, the count of its arguments,
// its arguments. The reply is {0, result...} or {code, index} where the
// code is -14 (precondition), -13 (type), -12 (not found), -15 (bound) or
// -17 (not an integer, or past 64 bits): ten below the codes scriptReply
// shares, which carry no index. Integers are added as decimal
// strings, exactly: Lua's numbers are doubles, and INCRBY must not fail
// halfway through the writes.
var txScript = onceScript(`
local MAXHI, MAXLO = 9223372036, 854775807
local function int(s)
  if not s then return {false, 0, 0} end
  if not (s == '0' or string.match(s, '^%-?[1-9]%d*$')) then return nil end
  local neg = string.sub(s, 1, 1) == '-'
  local d = neg and string.sub(s, 2) or s
  if #d > 19 then return nil end
  local hi, lo = tonumber(string.sub(d, 1, -10)) or 0, tonumber(string.sub(d, -9))
  if hi > MAXHI or (hi == MAXHI and lo > MAXLO + (neg and 1 or 0)) then return nil end
  return {neg, hi, lo}
end
local function add(a, b)
  local neg, hi, lo
  if a[1] == b[1] then
    neg, hi, lo = a[1], a[2] + b[2], a[3] + b[3]
    if lo >= 1e9 then lo, hi = lo - 1e9, hi + 1 end
  else
    local big, small = a, b
    if a[2] < b[2] or (a[2] == b[2] and a[3] < b[3]) then big, small = b, a end
    neg, hi, lo = big[1], big[2] - small[2], big[3] - small[3]
    if lo < 0 then lo, hi = lo + 1e9, hi - 1 end
  end
  if hi > MAXHI or (hi == MAXHI and lo > MAXLO + (neg and 1 or 0)) then return nil end
  if hi == 0 and lo == 0 then return '0' end
  local s = string.format('%.0f', lo)
  if hi > 0 then s = string.format('%.0f%09.0f', hi, lo) end
  if neg then s = '-' .. s end
  return s
end

local nkeys, maxFields, maxList = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local keys = {}
local function key(i)
  local k = keys[i]
  if not k then
    local t = redis.call('TYPE', KEYS[i])['ok']
    k = {t = t, fields = {}, fresh = t == 'none'}
    keys[i] = k
  end
  return k
end
local function str(i, k)
  if k.value == nil then k.value = redis.call('GET', KEYS[i]) end
  return k.value
end
local function field(i, k, f)
  local v = k.fields[f]
  if v == nil then
    v = false
    if not k.fresh then v = redis.call('HGET', KEYS[i], f) end
    k.fields[f] = v
  end
  return v
end
local function len(i, k)
  if k.len == nil then
    k.len = 0
    if k.t == 'hash' then k.len = redis.call('HLEN', KEYS[i]) end
    if k.t == 'list' then k.len = redis.call('LLEN', KEYS[i]) end
  end
  return k.len
end
local function gone(k) k.t, k.value, k.fields, k.fresh, k.len = 'none', false, {}, true, 0 end

local ops, out, pos, n = {}, {0}, 6, 0
while pos <= #ARGV do
  n = n + 1
  local op = {i = tonumber(ARGV[pos]), name = ARGV[pos + 1], match = ARGV[pos + 2], absent = ARGV[pos + 3], typ = ARGV[pos + 4]}
  local argc = tonumber(ARGV[pos + 5])
  op.args = {unpack(ARGV, pos + 6, pos + 5 + argc)}
  pos = pos + 6 + argc
  ops[n] = op
  local k = key(op.i)
  if op.absent == '1' and k.t ~= 'none' then return {-14, n} end
  if op.typ ~= '' and k.t ~= op.typ then return {-14, n} end
  if op.match == '*' then
    if k.t == 'none' then return {-14, n} end
  elseif op.match ~= '' then
    if k.t ~= 'string' then return {-14, n} end
    local tag, ok = redis.sha1hex(str(op.i, k)), false
    for want in string.gmatch(op.match, '[^,]+') do
      if want == tag then ok = true end
    end
    if not ok then return {-14, n} end
  end
  local name, a = op.name, op.args
  local want = ({set = 'string', incr = 'string', hset = 'hash', hdel = 'hash', hincr = 'hash', push = 'list'})[name]
  if want and k.t ~= 'none' and k.t ~= want then return {-13, n} end
  if name == 'set' then
    k.t, k.value = 'string', a[1]
    out[n + 1] = 0
  elseif name == 'delete' then
    out[n + 1] = k.t == 'none' and 0 or 1
    gone(k)
  elseif name == 'incr' then
    local cur = int(str(op.i, k))
    local sum = cur and add(cur, int(a[1]))
    if not sum then return {-17, n} end
    k.t, k.value = 'string', sum
    out[n + 1] = sum
  elseif name == 'expire' then
    if k.t == 'none' then return {-12, n} end
    out[n + 1] = 0
  elseif name == 'hset' then
    local added = 0
    for j = 1, #a, 2 do
      if not field(op.i, k, a[j]) then added = added + 1 end
      k.fields[a[j]] = a[j + 1]
    end
    if len(op.i, k) + added > maxFields then return {-15, n} end
    k.t, k.len = 'hash', k.len + added
    out[n + 1] = added
  elseif name == 'hdel' then
    local removed = 0
    if k.t == 'hash' then
      for j = 1, #a do
        if field(op.i, k, a[j]) then removed = removed + 1 end
        k.fields[a[j]] = false
      end
      k.len = len(op.i, k) - removed
      if k.len == 0 then gone(k) end
    end
    out[n + 1] = removed
  elseif name == 'hincr' then
    local v = field(op.i, k, a[1])
    local cur = int(v)
    local sum = cur and add(cur, int(a[2]))
    if not sum then return {-17, n} end
    if not v then
      if len(op.i, k) + 1 > maxFields then return {-15, n} end
      k.len = k.len + 1
    end
    k.t, k.fields[a[1]] = 'hash', sum
    out[n + 1] = sum
  elseif name == 'push' then
    local length = len(op.i, k) + #a - 1
    if length > maxList then return {-15, n} end
    k.t, k.len = 'list', length
    out[n + 1] = length
  end
end

for _, op in ipairs(ops) do
  local k, a = KEYS[op.i], op.args
  local name = op.name
  if name == 'set' then
    if tonumber(a[2]) > 0 then redis.call('SET', k, a[1], 'PX', a[2]) else redis.call('SET', k, a[1]) end
  elseif name == 'delete' then redis.call('UNLINK', k)
  elseif name == 'incr' then redis.call('INCRBY', k, a[1])
  elseif name == 'expire' then
    if tonumber(a[1]) > 0 then redis.call('PEXPIRE', k, a[1]) else redis.call('PERSIST', k) end
  elseif name == 'hset' then redis.call('HSET', k, unpack(a))
  elseif name == 'hdel' then redis.call('HDEL', k, unpack(a))
  elseif name == 'hincr' then redis.call('HINCRBY', k, a[1], a[2])
  elseif name == 'push' then redis.call(a[1], k, unpack(a, 2))
  end
end
return out
`)

// Tx applies ops all or nothing, in one atomic step (one script), and
// returns what each did, in order. Nothing is written when a precondition
// fails, a key holds another type than its operation needs, an expire
// finds no key, an increment meets a value that is not an integer or
// would pass 64 bits, or a hash or list would pass its bound: the
// *TxError says which operation. On a Cluster every key must map to one
// slot (*CrossSlotError). With once it applies at most once (see Once);
// replayed says the results are an earlier call's.
func (s *Store) Tx(ctx context.Context, ops []TxOp, once Once) (results []TxResult, replayed bool, err error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var keys []string
	index := map[string]int{}
	for _, op := range ops {
		if _, ok := index[op.Key]; !ok {
			index[op.Key] = len(keys) + 1
			keys = append(keys, op.Key)
		}
	}
	// The request's span says how large the transaction is and, when its
	// keys share one, the slot it runs in (a Cluster's shard).
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.Int("dubebox.tx.ops", len(ops)))
	slot, err := s.oneSlot(keys)
	if err == nil {
		span.SetAttributes(attribute.Int("dubebox.tx.slot", slot))
	} else if _, ok := s.rdb.(*redis.ClusterClient); ok {
		return nil, false, err
	}
	args := []any{len(keys), s.cfg.MaxHashFields, s.cfg.MaxListLength}
	for _, op := range ops {
		args = append(args, txArgs(op, index[op.Key])...)
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = s.key(k)
	}
	reply, replayed, err := s.onceWrite(ctx, "tx", txScript, full, once, args...)
	var code int64
	if err == nil && len(reply) == 2 {
		code, _ = reply[0].(int64)
	}
	if err != nil || code < 0 {
		return nil, false, txFailure(err, code, reply)
	}
	if len(reply) != len(ops)+1 {
		return nil, false, wrap("tx", fmt.Errorf("unexpected reply %v: %w", reply, errInternal))
	}
	results = make([]TxResult, len(ops))
	for i, op := range ops {
		switch v := reply[i+1].(type) {
		case int64:
			results[i].Int = v
		case string:
			if results[i].Int, err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, false, wrap("tx", errors.Join(err, errInternal))
			}
		}
		if op.Op == TxSet {
			results[i].Tag = ValueTag(op.Value, "")
		}
	}
	return results, replayed, nil
}

// txFailure turns a failed transaction's reply, {code, operation}, into
// its *TxError.
func txFailure(err error, code int64, reply []any) error {
	if err != nil {
		return err
	}
	n, _ := reply[1].(int64)
	cause := map[int64]error{-12: ErrNotFound, -13: ErrWrongType, -14: ErrPreconditionFailed, -15: ErrTooManyItems, -17: ErrNotInteger}[code]
	if cause == nil {
		return wrap("tx", fmt.Errorf("unexpected reply %v: %w", reply, errInternal))
	}
	return &TxError{Index: int(n) - 1, Err: cause}
}

// oneSlot is the Cluster slot keys share, or a *CrossSlotError when they
// map to more than one.
func (s *Store) oneSlot(keys []string) (int, error) {
	slots := make([]int, len(keys))
	for i, k := range keys {
		slots[i] = s.Slot(k)
	}
	if slices.Min(slots) != slices.Max(slots) {
		return 0, &CrossSlotError{Keys: keys, Slots: slots}
	}
	return slots[0], nil
}

// txArgs encodes one operation for txScript, on the key at index i.
func txArgs(op TxOp, i int) []any {
	match := strings.Join(op.If.Match, ",")
	if op.If.Exists {
		match = "*"
	}
	absent := ""
	if op.If.Absent {
		absent = "1"
	}
	var args []any
	switch op.Op {
	case TxSet:
		args = []any{encodeValue(op.Value, ""), op.TTL.Milliseconds()}
	case TxIncr:
		args = []any{op.By}
	case TxExpire:
		args = []any{op.TTL.Milliseconds()}
	case TxHSet:
		for _, f := range op.Fields {
			args = append(args, f)
		}
	case TxHDel:
		for _, f := range op.Names {
			args = append(args, f)
		}
	case TxHIncr:
		args = []any{op.Names[0], op.By}
	case TxPush:
		cmd := "RPUSH"
		if op.End == Head {
			cmd = "LPUSH"
		}
		args = append(args, cmd)
		for _, v := range op.Values {
			args = append(args, v)
		}
	}
	return append([]any{i, op.Op, match, absent, op.If.Type, len(args)}, args...)
}
