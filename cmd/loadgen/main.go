// Command loadgen drives realistic traffic at a DubeBox API so that its
// cache behaviour shows on the dashboard, and measures it for the benchmark.
//
// Keys are drawn from a Zipf distribution over -keys (a hot set emerges),
// reads and writes mix by -read, writes carry TTLs drawn between -ttl-min and
// -ttl-max (so keys expire and misses follow), -hash of the requests use
// hashes, and -bad of them are bad requests (so the error panels move). It
// runs closed-loop with -c workers, or open-loop at -rate requests per
// second, for -duration or until interrupted. It exits with status 1 when
// more than -max-errors of the requests failed (5xx or no answer), so that a
// script notices a server that died under it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	cfg, err := parseFlags(args, out)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout: cfg.timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        cfg.workers * 2,
			MaxIdleConnsPerHost: cfg.workers * 2,
			IdleConnTimeout:     90 * time.Second,
		},
	}
	if err := checkReachable(ctx, client, cfg.url); err != nil {
		return err
	}
	g := newGenerator(cfg, client)
	if cfg.preload {
		if err := g.preloadKeys(ctx); err != nil {
			return err
		}
	}
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	fmt.Fprintln(out, cfg.describe())
	sum := g.run(ctx, out)
	sum.print(out)
	if cfg.jsonPath != "" {
		if err := sum.writeJSON(cfg.jsonPath); err != nil {
			return err
		}
	}
	return sum.check(cfg.maxErrors)
}

// checkReachable fails at once when the API does not answer /healthz, so a
// typo in -url is not mistaken for a run full of errors.
func checkReachable(ctx context.Context, c *http.Client, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("-url %s: %w", base, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("the API at %s is unreachable: %w", base, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the API at %s answered /healthz with %d", base, resp.StatusCode)
	}
	return nil
}
