package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

type config struct {
	url      string
	token    string
	mode     string
	workers  int
	rate     float64
	duration time.Duration
	timeout  time.Duration
	report   time.Duration
	keys     uint64
	zipfS    float64
	read     float64
	hash     float64
	bad      float64
	noTTL    float64
	ttlMin   time.Duration
	ttlMax   time.Duration
	valueLen int
	prefix   string
	preload  bool
	jsonPath string
	// maxErrors is the share of requests that may fail (5xx or no answer)
	// before the run counts as failed.
	maxErrors float64
}

// describe is the run's first line: only the settings that apply to the
// mode, and how it ends.
func (c config) describe() string {
	loop := fmt.Sprintf("closed loop with %d workers", c.workers)
	if c.rate > 0 {
		loop = fmt.Sprintf("open loop at %.0f req/s (%d workers)", c.rate, c.workers)
	}
	end := "until interrupted (Ctrl-C; -duration sets an end)"
	if c.duration > 0 {
		end = "for " + c.duration.String()
	}
	mix := ""
	if c.mode == "mix" {
		mix = fmt.Sprintf(", read %.0f%%, hash %.0f%%, bad %.1f%%", c.read*100, c.hash*100, c.bad*100)
	}
	return fmt.Sprintf("loadgen: %s, mode %s, %s, keys %d (zipf s=%.2f)%s, %s",
		c.url, c.mode, loop, c.keys, c.zipfS, mix, end)
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(out, "loadgen drives traffic at a DubeBox API and reports throughput, hit ratio and latency.")
		fmt.Fprintln(out, "\nUsage: loadgen [flags]")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.url, "url", "http://localhost:5000", "base URL of the API")
	fs.StringVar(&c.token, "token", "", "bearer token, when the API has API_TOKEN set (or LOADGEN_TOKEN)")
	fs.StringVar(&c.mode, "mode", "mix", "mix (realistic traffic), get (GET /v1/kv/:key on preloaded keys) or put (PUT /v1/kv/:key)")
	fs.IntVar(&c.workers, "c", 16, "concurrent workers (connections)")
	fs.Float64Var(&c.rate, "rate", 0, "open loop: requests per second (0: closed loop, each worker sends as fast as it is answered)")
	fs.DurationVar(&c.duration, "duration", 0, "how long to run (0: until interrupted)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "per-request timeout")
	fs.DurationVar(&c.report, "report", 5*time.Second, "interval of the live line")
	fs.Uint64Var(&c.keys, "keys", 10000, "size of the key space")
	fs.Float64Var(&c.zipfS, "zipf", 1.1, "Zipf exponent s (> 1): larger makes the hot set smaller")
	fs.Float64Var(&c.read, "read", 0.8, "share of reads among good requests")
	fs.Float64Var(&c.hash, "hash", 0.1, "share of requests on hashes")
	fs.Float64Var(&c.bad, "bad", 0.01, "share of bad requests (400, 404, 405, 409)")
	fs.Float64Var(&c.noTTL, "no-ttl", 0.2, "share of writes without a TTL")
	fs.DurationVar(&c.ttlMin, "ttl-min", 5*time.Second, "shortest TTL of a write")
	fs.DurationVar(&c.ttlMax, "ttl-max", 120*time.Second, "longest TTL of a write")
	fs.IntVar(&c.valueLen, "value-bytes", 64, "size of written values")
	fs.StringVar(&c.prefix, "prefix", "lg", "prefix of the keys loadgen uses")
	fs.BoolVar(&c.preload, "preload", false, "write every key once (no TTL) before the run; implied by -mode get")
	fs.StringVar(&c.jsonPath, "json", "", "also write the summary as JSON to this file")
	fs.Float64Var(&c.maxErrors, "max-errors", 0.01, "share of requests that may fail (5xx or no answer), and of those that may be refused with a 4xx not asked for with -bad, before loadgen exits with status 1")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %v (see -help)", fs.Args())
	}
	var errs []error
	check := func(ok bool, msg string) {
		if !ok {
			errs = append(errs, errors.New(msg))
		}
	}
	check(c.mode == "mix" || c.mode == "get" || c.mode == "put", "-mode must be mix, get or put")
	check(c.workers > 0, "-c must be positive")
	check(c.rate >= 0, "-rate must not be negative")
	check(c.keys > 0, "-keys must be positive")
	check(c.zipfS > 1, "-zipf must be greater than 1")
	for _, p := range []struct {
		v    float64
		name string
	}{{c.read, "-read"}, {c.hash, "-hash"}, {c.bad, "-bad"}, {c.noTTL, "-no-ttl"}, {c.maxErrors, "-max-errors"}} {
		check(p.v >= 0 && p.v <= 1, p.name+" must be between 0 and 1")
	}
	check(c.ttlMin >= time.Second && c.ttlMax >= c.ttlMin, "-ttl-min must be at least 1s and -ttl-max at least -ttl-min")
	check(c.valueLen > 0, "-value-bytes must be positive")
	check(c.report > 0, "-report must be positive")
	if c.mode == "get" {
		c.preload = true
	}
	return c, errors.Join(errs...)
}
