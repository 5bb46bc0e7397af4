package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/redistest"
	"github.com/dubebox/dubebox/internal/store"
)

// TestSubscriptionBudget: while the messages the subscribers hold fill the
// budget, a subscriber that is behind is dropped as a slow reader and one
// that keeps up is not; what a dropped subscriber held is given back, so a
// later subscriber has the whole budget again.
func TestSubscriptionBudget(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Client(t)
	s := openStore(t, rdb, prefix, time.Second, nil)
	ctx := t.Context()
	const budget, size = 3000, 1000
	fast, err := s.Subscribe(ctx, "b", 100, budget)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	slow, err := s.Subscribe(ctx, "b", 100, budget)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(n int) {
		t.Helper()
		for range n {
			if _, err := s.Publish(ctx, store.Message{Channel: "b", Text: strings.Repeat("m", size), PublishedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-fast.C:
				fast.Taken(m)
			case <-time.After(5 * time.Second):
				t.Fatal("the reading subscriber got nothing")
			}
		}
	}
	holds := func(sub *store.Subscription, n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); len(sub.C) != n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("a subscriber that does not read holds %d messages, want %d", len(sub.C), n)
			}
		}
	}
	publish(budget / size)
	holds(slow, budget/size)
	publish(1)
	// Dropped, it was emptied: what it held was given back.
	holds(slow, 0)
	if _, ok := <-slow.C; ok || !errors.Is(slow.Err(), store.ErrSlowReader) {
		t.Fatalf("the slow subscriber, past the budget, ended with %v; want ErrSlowReader", slow.Err())
	}
	// The budget is whole again: a new slow subscriber holds as many.
	again, err := s.Subscribe(ctx, "b", 100, budget)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	publish(budget / size)
	holds(again, budget/size)
}
