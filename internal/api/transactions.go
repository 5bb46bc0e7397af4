package api

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/gin-gonic/gin"
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// txStore is what the transaction route needs.
type txStore interface {
	Tx(ctx context.Context, ops []store.TxOp, once store.Once) ([]store.TxResult, bool, error)
}

// txPath is the transaction route.
const txPath = "/v1/tx"

type txRequest struct {
	Ops []jsontext.Value `json:"ops"`
}

// txHead is what every operation has: its name and key, and its
// precondition.
type txHead struct {
	Op          string  `json:"op"`
	Key         string  `json:"key"`
	IfMatch     *string `json:"if_match"`
	IfNoneMatch *string `json:"if_none_match"`
	IfType      *string `json:"if_type"`
}

// The operations' bodies, each its own schema in the document (one of
// them, by "op"): a member another operation takes is refused, as any
// unknown member is.
type (
	txSetOp struct {
		txHead
		Value      *string     `json:"value"`
		TTLSeconds optionalTTL `json:"ttl_seconds"`
	}
	txDeleteOp struct {
		txHead
	}
	txIncrOp struct {
		txHead
		By *int64 `json:"by"`
	}
	txExpireOp struct {
		txHead
		TTLSeconds optionalTTL `json:"ttl_seconds"`
	}
	txHSetOp struct {
		txHead
		Fields map[string]string `json:"fields"`
	}
	txHDelOp struct {
		txHead
		Fields []string `json:"fields"`
	}
	txHIncrOp struct {
		txHead
		Field string `json:"field"`
		By    *int64 `json:"by"`
	}
	txPushOp struct {
		txHead
		Values []string `json:"values"`
		End    string   `json:"end"`
	}
)

// txResult is one operation's outcome: what the single-key route would
// have answered.
type txResult struct {
	Op         string `json:"op"`
	Key        string `json:"key"`
	Field      string `json:"field,omitempty"`
	ETag       string `json:"etag,omitempty"`
	TTLSeconds *int64 `json:"ttl_seconds,omitempty"`
	Value      *int64 `json:"value,omitempty"`
	Deleted    *bool  `json:"deleted,omitempty"`
	Added      *int64 `json:"added,omitempty"`
	Removed    *int64 `json:"removed,omitempty"`
	Length     *int64 `json:"length,omitempty"`
}

type txResponse struct {
	Results []txResult `json:"results"`
}

// tx applies a transaction: typed operations on any keys (on a Cluster,
// keys of one slot), all or nothing, in one atomic step.
func (h *handler) tx(c *gin.Context) error {
	var req txRequest
	if err := h.decode(c, &req, false); err != nil {
		return err
	}
	if len(req.Ops) == 0 || len(req.Ops) > h.cfg.MaxTxOps {
		return invalid(fmt.Sprintf("ops must hold from 1 to %d operations (MAX_TX_OPS)", h.cfg.MaxTxOps))
	}
	ops := make([]store.TxOp, len(req.Ops))
	results := make([]txResult, len(req.Ops))
	for i, raw := range req.Ops {
		op, res, err := h.txOp(raw)
		if err != nil {
			return opError(i, err)
		}
		ops[i], results[i] = op, res
	}
	o, err := once(c)
	if err != nil {
		return err
	}
	done, again, err := h.store.Tx(c.Request.Context(), ops, o)
	if err != nil {
		return txError(ops, err)
	}
	for i, r := range done {
		results[i].fill(ops[i], r)
	}
	replayed(c, again)
	h.reply(c, http.StatusOK, txResponse{Results: results})
	return nil
}

// txOp reads and checks one operation, and begins its result.
func (h *handler) txOp(raw jsontext.Value) (store.TxOp, txResult, error) {
	var head struct {
		Op string `json:"op"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || raw.Kind() != '{' {
		return store.TxOp{}, txResult{}, invalid("must be a JSON object with an op")
	}
	op := store.TxOp{Op: head.Op}
	var common *txHead
	var err error
	switch head.Op {
	case store.TxSet:
		var o txSetOp
		if err = h.decodeOp(raw, &o); err == nil {
			common = &o.txHead
			if op.Value, err = h.requiredValue(o.Value); err == nil {
				op.TTL, err = ttlFromSeconds(o.TTLSeconds.seconds)
			}
		}
	case store.TxDelete:
		var o txDeleteOp
		if err = h.decodeOp(raw, &o); err == nil {
			common = &o.txHead
		}
	case store.TxIncr:
		var o txIncrOp
		if err = h.decodeOp(raw, &o); err == nil {
			common, op.By = &o.txHead, byOrOne(o.By)
		}
	case store.TxExpire:
		var o txExpireOp
		if err = h.decodeOp(raw, &o); err == nil {
			common = &o.txHead
			switch {
			case !o.TTLSeconds.given:
				err = invalid("ttl_seconds is required: a whole number of seconds, or null to remove the TTL")
			case o.TTLSeconds.seconds != nil:
				op.TTL, err = ttlFromSeconds(o.TTLSeconds.seconds)
			}
		}
	case store.TxHSet:
		var o txHSetOp
		if err = h.decodeOp(raw, &o); err == nil {
			common = &o.txHead
			op.Fields, err = h.fieldPairs(o.Fields)
		}
	case store.TxHDel:
		var o txHDelOp
		if err = h.decodeOp(raw, &o); err == nil {
			common = &o.txHead
			op.Names, err = h.fieldNames(o.Fields)
		}
	case store.TxHIncr:
		var o txHIncrOp
		if err = h.decodeOp(raw, &o); err == nil {
			common, op.By, op.Names = &o.txHead, byOrOne(o.By), []string{o.Field}
			err = checkName("field", o.Field, h.cfg.MaxKeyBytes)
		}
	case store.TxPush:
		var o txPushOp
		if err = h.decodeOp(raw, &o); err == nil {
			common = &o.txHead
			op.Values, op.End, err = h.pushValues(o.Values, o.End)
		}
	default:
		return op, txResult{}, invalid(fmt.Sprintf("op must be one of %s", strings.Join(txOps, ", ")))
	}
	if err != nil {
		return op, txResult{}, err
	}
	op.Key = common.Key
	if err := checkName("key", op.Key, h.cfg.MaxKeyBytes); err != nil {
		return op, txResult{}, err
	}
	if op.If, err = txCondition(common); err != nil {
		return op, txResult{}, err
	}
	res := txResult{Op: op.Op, Key: op.Key}
	if op.Op == store.TxHIncr {
		res.Field = op.Names[0]
	}
	return op, res, nil
}

// txOps are the operations, in the document's order.
var txOps = []string{store.TxSet, store.TxDelete, store.TxIncr, store.TxExpire, store.TxHSet, store.TxHDel, store.TxHIncr, store.TxPush}

// decodeOp decodes one operation as strictly as a request body.
func (h *handler) decodeOp(raw jsontext.Value, dst any) error {
	if err := json.Unmarshal(raw, dst, decodeOptions); err != nil {
		return decodeError(err, h.maxBody)
	}
	return nil
}

func byOrOne(by *int64) int64 {
	if by == nil {
		return 1
	}
	return *by
}

// fieldPairs checks an hset's fields and returns them as name, value
// pairs, in name order (so that a retry's fingerprint is the same).
func (h *handler) fieldPairs(fields map[string]string) ([]string, error) {
	if len(fields) == 0 || len(fields) > MaxHashFieldsPerWrite {
		return nil, invalid(fmt.Sprintf("fields must hold from 1 to %d fields", MaxHashFieldsPerWrite))
	}
	pairs := make([]string, 0, 2*len(fields))
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		if err := checkName("field", f, h.cfg.MaxKeyBytes); err != nil {
			return nil, err
		}
		if err := h.checkValue(fields[f]); err != nil {
			return nil, err
		}
		pairs = append(pairs, f, fields[f])
	}
	return pairs, nil
}

// fieldNames checks an hdel's field names.
func (h *handler) fieldNames(names []string) ([]string, error) {
	if len(names) == 0 || len(names) > MaxHashFieldsPerWrite {
		return nil, invalid(fmt.Sprintf("fields must hold from 1 to %d field names", MaxHashFieldsPerWrite))
	}
	for _, f := range names {
		if err := checkName("field", f, h.cfg.MaxKeyBytes); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// pushValues checks a push's values and end (tail when left out).
func (h *handler) pushValues(values []string, end string) ([]string, string, error) {
	if len(values) == 0 || len(values) > MaxListValues {
		return nil, "", invalid(fmt.Sprintf("values must hold from 1 to %d values", MaxListValues))
	}
	for _, v := range values {
		if err := h.checkValue(v); err != nil {
			return nil, "", err
		}
	}
	switch end {
	case "":
		end = store.Tail
	case store.Head, store.Tail:
	default:
		return nil, "", invalid("end must be head or tail")
	}
	return values, end, nil
}

// txCondition reads an operation's precondition: if_match as If-Match
// takes it (entity tags, or *), if_none_match "*" (the key must not
// exist), if_type (the type the key must hold).
func txCondition(head *txHead) (store.TxCondition, error) {
	var cond store.TxCondition
	if head.IfMatch != nil {
		if head.IfNoneMatch != nil {
			return cond, invalid("send if_match or if_none_match, not both")
		}
		m, err := matchCondition(*head.IfMatch)
		if err != nil {
			return cond, invalid("if_match takes entity tags as the ETag header gives them (quoted), or *")
		}
		cond.Condition = *m
	}
	if head.IfNoneMatch != nil {
		if *head.IfNoneMatch != "*" {
			return cond, invalid(`if_none_match takes only "*" (the key must not exist)`)
		}
		cond.Absent = true
	}
	if head.IfType != nil {
		switch *head.IfType {
		case store.TypeString, store.TypeHash, store.TypeList:
			cond.Type = *head.IfType
		default:
			return cond, invalid("if_type must be string, hash or list")
		}
	}
	return cond, nil
}

// opError says which operation a request's error is about.
func opError(i int, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	out := *e
	out.Message = fmt.Sprintf("ops[%d]: %s", i, strings.Replace(e.Message, "request body", "the operation", 1))
	out.Index = &i
	return &out
}

// txError answers a transaction that wrote nothing: the operation that
// stopped it, or the slots its keys span.
func txError(ops []store.TxOp, err error) error {
	var te *store.TxError
	var cs *store.CrossSlotError
	switch {
	case errors.As(err, &te):
		op := ops[te.Index]
		apiErr, _ := toAPIError(te.Err)
		why := txFailures[apiErr.Code]
		if why == "" {
			why = apiErr.Message
		}
		return &Error{Code: apiErr.Code, Index: &te.Index, Message: fmt.Sprintf("ops[%d] (%s on %q): %s; nothing was written", te.Index, op.Op, op.Key, why)}
	case errors.As(err, &cs):
		where := make([]string, len(cs.Keys))
		for i, k := range cs.Keys {
			where[i] = fmt.Sprintf("%q in slot %d", k, cs.Slots[i])
		}
		return &Error{Code: CodeCrossSlot, Message: fmt.Sprintf("on a Redis Cluster one transaction touches one slot, and its keys map to several (%s); nothing was written: give the keys one hash tag, the same text in braces, as {user:1}:cart and {user:1}:total", strings.Join(where, ", "))}
	}
	return err
}

// txFailures say why an operation stopped its transaction, in its terms.
var txFailures = map[string]string{
	CodePreconditionFailed: "the key is not as if_match, if_none_match or if_type requires, after the operations before it",
	CodeWrongType:          "the key holds another type than the operation writes",
	CodeNotFound:           "there is no key to expire",
	CodeNotInteger:         "the value is not an integer, or the increment would overflow a 64-bit integer",
	CodeTooManyItems:       "the hash would pass MAX_HASH_FIELDS fields, or the list MAX_LIST_LENGTH values",
}

// fill completes an operation's result from what the store did.
func (r *txResult) fill(op store.TxOp, done store.TxResult) {
	n := done.Int
	// A set and an expire give the TTL they left: none (0) is -1, as
	// Redis's TTL says of a key without one.
	secs := int64(-1)
	if op.TTL != 0 {
		secs = ttlSeconds(op.TTL)
	}
	switch op.Op {
	case store.TxSet:
		r.ETag = quoted(done.Tag)
		r.TTLSeconds = &secs
	case store.TxDelete:
		deleted := n == 1
		r.Deleted = &deleted
	case store.TxIncr, store.TxHIncr:
		r.Value = &n
	case store.TxExpire:
		r.TTLSeconds = &secs
	case store.TxHSet:
		r.Added = &n
	case store.TxHDel:
		r.Removed = &n
	case store.TxPush:
		r.Length = &n
	}
}
