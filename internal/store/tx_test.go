package store_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/store"
	"github.com/redis/go-redis/v9"
)

func TestTxIncrementsAsRedisDoes(t *testing.T) { eachTopology(t, testTxIncrementsAsRedisDoes) }

// testTxIncrementsAsRedisDoes holds the transaction's own arithmetic (done
// in the script before anything is written) to Redis's INCRBY and
// HINCRBY: for every value and increment, the same result, or a refusal
// where Redis refuses.
//
//nolint:thelper // a test body, run once per topology.
func testTxIncrementsAsRedisDoes(t *testing.T, tp redistest.Topology) {
	t.Parallel()
	s, rdb, prefix, _ := newStore(t, tp)
	ctx := context.Background()
	values := []string{"", "0", "-0", "007", " 1", "+1", "1e3", "abc", "-", "999999999", "-1000000000",
		"9007199254740993", "9223372036854775807", "-9223372036854775808", "9223372036854775808", "-9223372036854775809", "99999999999999999999"}
	bys := []int64{0, 1, -1, -7, 1000000001, -1000000001, math.MaxInt64, math.MinInt64, math.MaxInt64 - 3}
	type pair struct {
		value string
		by    int64
	}
	var pairs []pair
	for _, v := range values {
		for _, by := range bys {
			pairs = append(pairs, pair{v, by})
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		// Values and increments of every magnitude, of either sign.
		pairs = append(pairs, pair{strconv.FormatInt(r.Int64()>>r.IntN(63)*int64(1-2*r.IntN(2)), 10), r.Int64() >> r.IntN(63) * int64(1-2*r.IntN(2))})
	}
	for _, p := range pairs {
		for _, field := range []bool{false, true} {
			want, wantErr := oracle(ctx, t, rdb, prefix+"{o}:redis", p.value, p.by, field)
			got, gotErr := txIncr(ctx, t, s, rdb, prefix, "{o}:tx", p.value, p.by, field)
			if got != want || (wantErr == nil) != (gotErr == nil) || (gotErr != nil && !errors.Is(gotErr, store.ErrNotInteger)) {
				t.Fatalf("%q + %d (field %v): the transaction gives %q %v, Redis %q %v", p.value, p.by, field, got, gotErr, want, wantErr)
			}
		}
	}
}

// oracle is what Redis itself makes of value + by (INCRBY, or HINCRBY on
// a field), and the value it keeps.
func oracle(ctx context.Context, t *testing.T, rdb redis.UniversalClient, key, value string, by int64, field bool) (string, error) {
	t.Helper()
	rdb.Del(ctx, key)
	var err error
	switch {
	case value != "" && field:
		rdb.HSet(ctx, key, "f", value)
	case value != "":
		rdb.Set(ctx, key, value, 0)
	}
	if field {
		err = rdb.HIncrBy(ctx, key, "f", by).Err()
		v, _ := rdb.HGet(ctx, key, "f").Result()
		return v, err
	}
	err = rdb.IncrBy(ctx, key, by).Err()
	v, _ := rdb.Get(ctx, key).Result()
	return v, err
}

// txIncr is the same through a transaction: what it left, and its error.
func txIncr(ctx context.Context, t *testing.T, s *store.Store, rdb redis.UniversalClient, prefix, key, value string, by int64, field bool) (string, error) {
	t.Helper()
	rdb.Del(ctx, prefix+key)
	op := store.TxOp{Op: store.TxIncr, Key: key, By: by}
	switch {
	case field:
		op.Op, op.Names = store.TxHIncr, []string{"f"}
		if value != "" {
			rdb.HSet(ctx, prefix+key, "f", value)
		}
	case value != "":
		rdb.Set(ctx, prefix+key, value, 0)
	}
	res, _, err := s.Tx(ctx, []store.TxOp{op}, store.Once{})
	var v string
	if field {
		v, _ = rdb.HGet(ctx, prefix+key, "f").Result()
	} else {
		v, _ = rdb.Get(ctx, prefix+key).Result()
	}
	if err == nil && strconv.FormatInt(res[0].Int, 10) != v {
		t.Fatalf("%q + %d: the transaction answered %d and left %q", value, by, res[0].Int, v)
	}
	return v, err
}
