// Package api is DubeBox's HTTP layer: the Gin router, the routes kept from
// the original Flask tutorial (/, /set, /get) and those of /v1, the
// middleware that knows routes and the error shape (middleware.go), input
// validation and the one mapping of errors to statuses (errors.go). It knows
// the store only through the Store interface below.
package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/dubebox/dubebox/internal/store"
	"github.com/dubebox/dubebox/observability"
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// Store is what the HTTP layer needs from the store.
type Store interface {
	Ping(ctx context.Context) error
	Get(ctx context.Context, key string) (store.String, error)
	Set(ctx context.Context, key, value string, ttl time.Duration) error
	Incr(ctx context.Context, key string, by int64) (int64, error)
	Info(ctx context.Context, key string) (store.Info, error)
	Delete(ctx context.Context, key, typ string) error
	TTL(ctx context.Context, key, typ string) (time.Duration, error)
	Expire(ctx context.Context, key, typ string, ttl time.Duration) (time.Duration, error)
	Persist(ctx context.Context, key, typ string) (time.Duration, error)
	HSet(ctx context.Context, key string, fields map[string]string, ttl time.Duration) (store.Hash, error)
	HGetAll(ctx context.Context, key string) (store.Hash, error)
	HGet(ctx context.Context, key, field string) (string, error)
	HSetField(ctx context.Context, key, field, value string) error
	HDelField(ctx context.Context, key, field string) error
	HIncr(ctx context.Context, key, field string, by int64) (int64, error)
	Push(ctx context.Context, key, end string, values []string, ttl time.Duration) (int64, time.Duration, error)
	Pop(ctx context.Context, key, end string, count int) ([]string, int64, error)
	Remove(ctx context.Context, key, value string, count int64) (removed, length int64, err error)
	Trim(ctx context.Context, key string, start, stop int64) (int64, error)
	Range(ctx context.Context, key string, offset, limit int64) (store.List, error)
	Len(ctx context.Context, key string) (int64, error)
	Keys(ctx context.Context, prefix, typ string, cursor store.Cursor, limit int) ([]string, *store.Cursor, error)
	GetMany(ctx context.Context, keys []string) ([]store.Found, error)
	SetIf(ctx context.Context, key, value string, ttl time.Duration, cond store.Condition) error
	DeleteIf(ctx context.Context, key string, cond store.Condition) error
	HSetFieldIf(ctx context.Context, key, field, value string, cond store.Condition) error
	HDelFieldIf(ctx context.Context, key, field string, cond store.Condition) error
}

// Config holds what the router needs besides its dependencies. Each
// field's env tag is the variable that sets it; internal/config reads,
// defaults, validates and logs them from these tags.
type Config struct {
	// ServiceName names the server in span attributes.
	ServiceName string `env:"OTEL_SERVICE_NAME" envDefault:"dubebox"`
	// Version is reported by GET /.
	Version string
	// MaxKeyBytes bounds keys and hash field names.
	MaxKeyBytes int `env:"MAX_KEY_BYTES" envDefault:"512" valid:"1..1048576"`
	// MaxValueBytes bounds values; request bodies are bounded in proportion.
	MaxValueBytes int `env:"MAX_VALUE_BYTES" envDefault:"1048576" valid:"1..536870912"`
	// MaxHeaderBytes bounds the request's header names and values. The HTTP
	// server's own hard cap sits above its largest value (HeaderHardCap).
	MaxHeaderBytes int `env:"MAX_HEADER_BYTES" envDefault:"16384" valid:"1024..1048576"`
	// APIToken, when set, is required as a bearer token on every data route.
	APIToken string `env:"API_TOKEN" secret:"true"`
	// APIReadToken, when set (with APIToken), is a bearer token that may
	// only read: GET on the data routes.
	APIReadToken string `env:"API_READ_TOKEN" secret:"true"`
	// RateLimitRPS, when positive, limits each client address to this many
	// requests per second on the data routes, with bursts of RateLimitBurst.
	RateLimitRPS float64 `env:"RATE_LIMIT_RPS" envDefault:"0" valid:"0.."`
	// RateLimitBurst is the bucket's size; 0 means RateLimitRPS rounded up.
	// It is 0 while the limit is off.
	RateLimitBurst int `env:"RATE_LIMIT_BURST" envDefault:"0" valid:"0..1048576"`
}

// HeaderHardCap is the limit the HTTP server itself puts on a request's
// header block, past which net/http refuses it in plain text before any
// handler runs. It sits far enough above MAX_HEADER_BYTES's largest value
// (1 MiB) that any header block over MAX_HEADER_BYTES, up to that largest
// value and with room for the request line and per-line overhead, is
// refused by the router in the API's JSON shape.
const HeaderHardCap = 1<<20 + 64<<10

// Resolve fills what is derived from other settings, so that the values
// logged at start are the ones in force.
func (c *Config) Resolve() {
	switch {
	case c.RateLimitRPS == 0:
		c.RateLimitBurst = 0
	case c.RateLimitBurst == 0:
		c.RateLimitBurst = max(1, int(math.Ceil(c.RateLimitRPS)))
	}
}

// Deps are the router's collaborators, built by run.
type Deps struct {
	Store          Store
	Log            *zap.Logger
	Metrics        *observability.Metrics
	TracerProvider trace.TracerProvider
}

type handler struct {
	store   Store
	log     *zap.Logger
	metrics *observability.Metrics
	cfg     Config
	// maxBody bounds a request body: room for a value at its largest, even
	// when JSON escaping doubles it, and for the envelope around it.
	maxBody int64
}

// New returns the HTTP handler with its middleware in the fixed order:
// recover, request id, tracing, access log, metrics, the header limit, then
// auth (with its own limit on failures) and the rate limit on the data
// routes.
func New(cfg Config, deps Deps) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	h := &handler{
		store:   deps.Store,
		log:     deps.Log,
		metrics: deps.Metrics,
		cfg:     cfg,
		maxBody: 2*int64(cfg.MaxValueBytes) + 64<<10,
	}
	doc, err := OpenAPI()
	if err != nil {
		// The document is embedded and the tests parse it: this is a build
		// that was never tested.
		panic(err)
	}
	r := gin.New()
	// Match on the escaped path so that an encoded slash stays inside its
	// segment (and is then refused by key validation) instead of silently
	// routing a request somewhere else.
	r.UseRawPath = true
	// Gin would unescape path values as a query string, turning '+' into a
	// space; param unescapes them as a path does.
	r.UnescapePathValues = false
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	// Client addresses come from the connection, never from headers a client
	// can forge; put a proxy in front and this is the proxy's address.
	_ = r.SetTrustedProxies(nil)

	r.Use(
		h.recoverPanics(),
		assignRequestID,
		otelgin.Middleware(cfg.ServiceName,
			otelgin.WithTracerProvider(deps.TracerProvider),
			otelgin.WithPropagators(observability.Propagator()),
			// Request metrics are ours (Prometheus); otelgin's would be
			// computed and thrown away.
			otelgin.WithMeterProvider(noop.NewMeterProvider()),
			// Scrapes every few seconds would bury the traces that matter.
			otelgin.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/metrics" }),
		),
		accessLog(deps.Log),
		httpMetrics(deps.Metrics),
		h.headerLimit(cfg.MaxHeaderBytes),
	)
	r.NoRoute(h.handle(func(*gin.Context) error {
		return &Error{Code: CodeNotFound, Message: "no such route"}
	}))
	r.NoMethod(h.handle(func(*gin.Context) error {
		return &Error{Code: CodeMethodNotAllowed, Message: "method not allowed on this route"}
	}))

	r.GET("/", h.home)
	r.GET("/healthz", h.healthz)
	r.GET("/readyz", h.handle(h.readyz))
	r.GET("/metrics", gin.WrapH(deps.Metrics.Handler()))
	r.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", doc) })
	r.GET("/docs", h.handle(h.docsAsset))
	r.GET("/docs/:asset", h.handle(h.docsAsset))

	data := r.Group("/", h.auth(newClientLimiter(authFailureRPS, authFailureBurst)))
	if cfg.RateLimitRPS > 0 {
		data.Use(h.rateLimit(newClientLimiter(cfg.RateLimitRPS, max(cfg.RateLimitBurst, 1))))
	}
	data.Use(h.refuseConditions)
	data.GET("/set/:key/:value", h.handle(h.seedSet))
	data.GET("/get/:key", h.handle(h.seedGet))

	// Gin reads an escaped colon as a colon, not the start of a parameter.
	data.POST(strings.ReplaceAll(batchGetPath, ":", "\\:"), h.handle(h.batchGet))
	kv := data.Group("/v1/kv/:key")
	kv.PUT("", h.handle(h.putString))
	kv.GET("", h.handle(h.getString))
	kv.DELETE("", h.handle(h.deleteKey(store.TypeString)))
	kv.GET("/ttl", h.handle(h.ttlOf(store.TypeString, h.store.TTL)))
	kv.PUT("/ttl", h.handle(h.putTTL(store.TypeString)))
	kv.DELETE("/ttl", h.handle(h.ttlOf(store.TypeString, h.store.Persist)))
	kv.POST("/incr", h.handle(h.incr))

	// What every key has, whatever its type: hashes and lists get their
	// TTL here, where no field name can collide with it.
	data.GET("/v1/keys", h.handle(h.listKeys))
	keys := data.Group("/v1/keys/:key")
	keys.GET("", h.handle(h.keyInfo))
	keys.DELETE("", h.handle(h.deleteKey(store.AnyType)))
	keys.GET("/ttl", h.handle(h.ttlOf(store.AnyType, h.store.TTL)))
	keys.PUT("/ttl", h.handle(h.putTTL(store.AnyType)))
	keys.DELETE("/ttl", h.handle(h.ttlOf(store.AnyType, h.store.Persist)))

	hash := data.Group("/v1/hash/:key")
	hash.PUT("", h.handle(h.putHash))
	hash.GET("", h.handle(h.getHash))
	hash.DELETE("", h.handle(h.deleteKey(store.TypeHash)))
	hash.GET("/:field", h.handle(h.getField))
	hash.PUT("/:field", h.handle(h.putField))
	hash.DELETE("/:field", h.handle(h.deleteField))
	hash.POST("/:field/incr", h.handle(h.incrField))

	list := data.Group("/v1/list/:key")
	list.GET("", h.handle(h.getList))
	list.DELETE("", h.handle(h.deleteKey(store.TypeList)))
	list.GET("/length", h.handle(h.listLength))
	list.POST("/push", h.handle(h.push))
	list.POST("/pop", h.handle(h.pop))
	list.POST("/remove", h.handle(h.removeValues))
	list.POST("/trim", h.handle(h.trim))
	return r
}

// Failed authentications are limited per client address with a budget of
// their own, whether or not RATE_LIMIT_RPS is set: an address that has
// failed authBurst times in a row must wait a second per further attempt,
// so guessing a token costs time. A client with the right token is only
// held back while its address is over that budget.
const (
	authFailureRPS   = 1
	authFailureBurst = 10
)

// auth requires "Authorization: Bearer <token>" when API_TOKEN is set: the
// full token may do anything, API_READ_TOKEN's only read (403 otherwise).
// Tokens are compared in constant time so they cannot be guessed by timing,
// and an address over its budget of failures is answered 429 before its
// token is even compared, so it cannot be guessed by volume either.
func (h *handler) auth(failures *clientLimiter) gin.HandlerFunc {
	if h.cfg.APIToken == "" {
		return func(c *gin.Context) { c.Next() }
	}
	full, read := []byte(h.cfg.APIToken), []byte(h.cfg.APIReadToken)
	return func(c *gin.Context) {
		client, now := c.ClientIP(), time.Now()
		if wait := failures.wait(client, now); wait > 0 {
			h.refuse(c, wait, "too many failed authentications from this address; retry after the time in Retry-After")
			return
		}
		got, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		switch {
		case ok && subtle.ConstantTimeCompare([]byte(got), full) == 1:
			c.Next()
		case ok && len(read) > 0 && subtle.ConstantTimeCompare([]byte(got), read) == 1:
			if !IsRead(c.Request.Method, c.FullPath()) {
				h.respond(c, &Error{Code: CodeForbidden, Message: "this token may only read"})
				return
			}
			c.Next()
		default:
			failures.take(client, now)
			h.respond(c, &Error{Code: CodeUnauthorized, Message: "missing or wrong bearer token"})
		}
	}
}

// IsRead reports whether a route only reads, which the read token may
// call: every GET but the tutorial's /set, which writes through a GET, and
// the batch read, a POST.
func IsRead(method, route string) bool {
	switch {
	case route == batchGetPath:
		return true
	case strings.HasPrefix(route, "/set/"):
		return false
	}
	return method == http.MethodGet
}

func (h *handler) home(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"message": "Welcome to DubeBox 🚀", "status": "running", "version": h.cfg.Version})
}

func (h *handler) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz answers 200 only while Redis answers PING, so that a load balancer
// sends no traffic to an instance that can only answer 503. The cause goes
// in the one line that respond writes for a failed request.
func (h *handler) readyz(c *gin.Context) error {
	if err := h.store.Ping(c.Request.Context()); err != nil {
		return &Error{Code: CodeUnavailable, Message: "not ready: " + reason(err), Cause: err}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
	return nil
}

// reason names why Redis failed in words fit for a probe's answer; the full
// error goes to the log.
func reason(err error) string {
	if store.IsAuthError(err) {
		return "redis refused the credentials (REDIS_USERNAME, REDIS_PASSWORD)"
	}
	switch {
	case errors.Is(err, store.ErrTimeout):
		return "redis did not answer PING in time"
	case errors.Is(err, store.ErrUnavailable):
		return "redis is unreachable or refused the connection"
	default:
		return "redis answered PING with an error"
	}
}
