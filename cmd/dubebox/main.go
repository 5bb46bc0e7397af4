// Command dubebox serves the DubeBox HTTP API over Redis.
//
// With the single argument "healthcheck" it instead asks the server on
// HTTP_ADDR for /healthz and exits 0 when it answers 200: the container image
// has no shell or curl, so its health check is the binary itself. With
// --help it lists its settings (environment variables) and exits 0.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/dubebox/dubebox/internal/api"
	"github.com/dubebox/dubebox/internal/config"
	"github.com/dubebox/dubebox/internal/store"
	"github.com/dubebox/dubebox/observability"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"golang.org/x/net/netutil"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, nil)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dubebox:", err)
		if config.IsConfigError(err) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// run starts the service and blocks until ctx ends, then shuts it down. When
// ready is not nil it receives the listening address once the server
// accepts connections (tests listen on :0).
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, ready chan<- string) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help") {
		usage(stdout)
		return nil
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	if len(args) == 1 && args[0] == "healthcheck" {
		return healthcheck(ctx, cfg.HTTP.ListenAddr)
	}
	if len(args) > 0 {
		return &config.Error{Var: "arguments", Value: fmt.Sprint(args), Reason: "the only arguments accepted are healthcheck and --help"}
	}

	// The runtime has already applied a GOGC from the environment; this sets
	// the service's own default when there was none.
	debug.SetGCPercent(int(cfg.GCPercent))

	log, flushLog := observability.NewLogger(stdout, cfg.Log.Level, cfg.Log.Format)
	defer flushLog()
	log.Info("starting dubebox", zap.String("version", version), zap.Any("config", cfg.Fields()))
	if cfg.API.APIToken == "" {
		msg := "API_TOKEN is not set: listening on loopback only, and answering only requests to localhost; anyone on this machine can read and write"
		if cfg.API.AllowNoAuth {
			msg = "API_TOKEN is not set and ALLOW_NO_AUTH=true: anyone who reaches HTTP_ADDR can read and write"
		}
		log.Warn(msg, zap.String("addr", cfg.HTTP.ListenAddr))
	}

	tcfg := cfg.Tracing
	tcfg.Version, tcfg.Console = version, stdout
	tp, err := observability.NewTracerProvider(ctx, tcfg)
	if err != nil {
		return err
	}
	defer func() {
		// Flush the spans still batched, with a bound of its own: the
		// run context is already over by now.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("flushing spans", zap.Error(err))
		}
	}()

	metrics := observability.NewMetrics(version, store.ReadOps)

	// go-redis has one logger and one metrics recorder per process (see
	// RedisLogger and RecordRedirections). Only a Cluster redirects; the
	// recorder costs every command a clock reading, so it is left out
	// elsewhere.
	redis.SetLogger(observability.NewRedisLogger(log))
	if cfg.Store.Topology() == "cluster" {
		observability.RecordRedirections(metrics)
	}
	rdb := redis.NewUniversalClient(cfg.Store.Options())
	defer func() { _ = rdb.Close() }()
	if err := observability.InstrumentRedis(rdb, tp, metrics, log); err != nil {
		return err
	}
	st := store.Open(ctx, rdb, cfg.Store, metrics, log)
	if err := st.Ping(ctx); err != nil {
		// Start anyway: /readyz says 503 until Redis answers, and go-redis
		// reconnects by itself. Wrong credentials are worth their own line:
		// restarting will not fix them.
		msg := "redis is not answering yet; serving 503 until it does"
		if store.IsAuthError(err) {
			msg = "redis refused the credentials: check REDIS_USERNAME and REDIS_PASSWORD; serving 503 until they work"
		}
		log.Warn(msg, zap.String("redis_addr", cfg.Store.Addr), zap.Error(err))
	}
	if err := metrics.Readiness(st.Ready); err != nil {
		return err
	}

	acfg := cfg.API
	acfg.Version, acfg.ServiceName = version, cfg.Tracing.ServiceName
	acfg.MetricsElsewhere = cfg.HTTP.MetricsAddr != ""
	handler := api.New(acfg, api.Deps{Store: st, Log: log, Metrics: metrics, TracerProvider: tp, Done: ctx.Done()})

	if cfg.HTTP.PprofAddr != "" {
		go serveAside(ctx, "pprof", cfg.HTTP.PprofAddr, pprofMux(), log)
	}
	if cfg.HTTP.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics.Handler())
		go serveAside(ctx, "metrics", cfg.HTTP.MetricsAddr, mux, log)
	}
	return serve(ctx, cfg.HTTP, acfg.HeaderCap(), handler, log, metrics, ready)
}

// serve listens first, so that a bad address fails at once and :0 works,
// then serves until ctx ends and shuts down within SHUTDOWN_TIMEOUT. At
// most MAX_CONNECTIONS connections are held at once, and none may send
// more than headerCap bytes of request line and headers: together they
// bound what clients can make the server hold before any handler (and
// authentication) runs. What the HTTP server refuses itself is answered in
// the API's JSON error shape.
func serve(ctx context.Context, cfg config.HTTP, headerCap int, handler http.Handler, log *zap.Logger, metrics *observability.Metrics, ready chan<- string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on HTTP_ADDR %s: %w", cfg.ListenAddr, err)
	}
	ln = api.ServerErrorsAsJSON(netutil.LimitListener(ln, cfg.MaxConnections), log, metrics)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		// The server's own limit, whose refusal (net/http's, put in JSON
		// by the listener) cannot say which limit was met, sits a little
		// above MAX_HEADER_BYTES, so that the router's 431 answers first
		// (api.HeaderSlack).
		MaxHeaderBytes: headerCap,
		ErrorLog:       zap.NewStdLog(log.Named("http.server")),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", zap.String("addr", ln.Addr().String()))
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", zap.Stringer("timeout", cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	log.Info("stopped")
	return nil
}

// usage says how to run the service: it takes its settings from the
// environment, listed here with their defaults (docs/reference.md
// describes each).
func usage(w io.Writer) {
	fmt.Fprintf(w, `dubebox %s: strings, hashes and lists in Redis over HTTP.

Usage:
  dubebox               serve the API on HTTP_ADDR until SIGTERM or Ctrl-C
  dubebox healthcheck   exit 0 when the server on HTTP_ADDR answers /healthz
  dubebox --help        this text

Settings come from the environment (docs/reference.md#configuration says
what each does); a bad one stops the start with exit status 2. Secrets are
marked (secret) and never logged.

`, version)
	for _, v := range config.Vars() {
		line := "  " + v.Name
		if v.Default != "" {
			line += "=" + v.Default
		}
		if v.Secret {
			line += "  (secret)"
		}
		fmt.Fprintln(w, line)
	}
}

// pprofMux serves net/http/pprof.
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// serveAside serves handler on an address of its own (profiling, metrics)
// until ctx ends. A failure to listen is logged, not fatal: the API goes on.
func serveAside(ctx context.Context, what, addr string, handler http.Handler, log *zap.Logger) {
	srv := &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	log.Info(what+" listening", zap.String("addr", addr))
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error(what+" server", zap.Error(err))
	}
}

// healthcheck asks the local server for /healthz.
func healthcheck(ctx context.Context, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort("127.0.0.1", port)+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %d", resp.StatusCode)
	}
	return nil
}
