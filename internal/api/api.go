// Package api is DubeBox's HTTP layer: the Gin router, the routes of the seed
// tutorial and of /v1, input validation and the mapping of errors to
// statuses. It knows the store only through the Store interface below.
package api

import (
	"cmp"
	"context"
	"crypto/subtle"
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
	Delete(ctx context.Context, key string) error
	Incr(ctx context.Context, key string, by int64) (int64, error)
	TTL(ctx context.Context, key string) (time.Duration, error)
	Expire(ctx context.Context, key string, ttl time.Duration) (time.Duration, error)
	Persist(ctx context.Context, key string) (time.Duration, error)
	HSet(ctx context.Context, key string, fields map[string]string, ttl time.Duration) (store.Hash, error)
	HGetAll(ctx context.Context, key string) (store.Hash, error)
	HGet(ctx context.Context, key, field string) (string, error)
	HSetField(ctx context.Context, key, field, value string) error
	HDelField(ctx context.Context, key, field string) error
	HIncr(ctx context.Context, key, field string, by int64) (int64, error)
	HDelete(ctx context.Context, key string) error
}

// Config holds what the router needs besides its dependencies.
type Config struct {
	// ServiceName names the server in span attributes.
	ServiceName string
	// Version is reported by GET /.
	Version string
	// MaxKeyBytes bounds keys and hash field names.
	MaxKeyBytes int
	// MaxValueBytes bounds values; request bodies are bounded in proportion.
	MaxValueBytes int
	// APIToken, when set, is required as a bearer token on every data route.
	APIToken string
	// APIReadToken, when set (with APIToken), is a bearer token that may
	// only read: GET on the data routes.
	APIReadToken string
	// MaxHeaderBytes bounds the request's header names and values.
	MaxHeaderBytes int
	// RateLimitRPS, when positive, limits each client address to this many
	// requests per second on the data routes, with bursts of RateLimitBurst.
	RateLimitRPS   float64
	RateLimitBurst int
}

// Deps are the router's collaborators, built by run.
type Deps struct {
	Store          Store
	Log            *zap.Logger
	Metrics        *observability.Metrics
	TracerProvider trace.TracerProvider
}

type handler struct {
	store Store
	log   *zap.Logger
	cfg   Config
	// maxBody bounds a request body: room for a value at its largest, even
	// when JSON escaping doubles it, and for the envelope around it.
	maxBody int64
}

// New returns the HTTP handler with its middleware in the fixed order:
// recover, request id, tracing, access log, metrics, the header limit, then
// auth and the rate limit on the data routes.
func New(cfg Config, deps Deps) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	h := &handler{
		store:   deps.Store,
		log:     deps.Log,
		cfg:     cfg,
		maxBody: 2*int64(cfg.MaxValueBytes) + 64<<10,
	}
	r := gin.New()
	// Match on the escaped path so that an encoded slash stays inside its
	// segment (and is then refused by key validation) instead of silently
	// routing a request somewhere else.
	r.UseRawPath = true
	r.UnescapePathValues = true
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	// Client addresses come from the connection, never from headers a client
	// can forge; put a proxy in front and this is the proxy's address.
	_ = r.SetTrustedProxies(nil)

	r.Use(
		observability.Recover(deps.Log, func(c *gin.Context) {
			h.respond(c, &Error{Code: CodeInternal, Message: internalMessage})
		}),
		observability.AssignRequestID(),
		otelgin.Middleware(cfg.ServiceName,
			otelgin.WithTracerProvider(deps.TracerProvider),
			otelgin.WithPropagators(observability.Propagator()),
			// Request metrics are ours (Prometheus); otelgin's would be
			// computed and thrown away.
			otelgin.WithMeterProvider(noop.NewMeterProvider()),
			// Scrapes every few seconds would bury the traces that matter.
			otelgin.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/metrics" }),
		),
		observability.AccessLog(deps.Log),
		observability.HTTPMetrics(deps.Metrics),
		h.headerLimit(cmp.Or(cfg.MaxHeaderBytes, 16<<10)),
	)
	r.NoRoute(func(c *gin.Context) {
		h.respond(c, &Error{Code: CodeNotFound, Message: "no such route"})
	})
	r.NoMethod(func(c *gin.Context) {
		h.respond(c, &Error{Code: CodeMethodNotAllowed, Message: "method not allowed on this route"})
	})

	r.GET("/", h.home)
	r.GET("/healthz", h.healthz)
	r.GET("/readyz", h.readyz)
	metrics := deps.Metrics.Handler()
	r.GET("/metrics", gin.WrapH(metrics))

	data := r.Group("/", h.auth())
	if cfg.RateLimitRPS > 0 {
		data.Use(h.rateLimit(newClientLimiter(cfg.RateLimitRPS, max(cfg.RateLimitBurst, 1), deps.Metrics.RateLimited)))
	}
	data.GET("/set/:key/:value", h.seedSet)
	data.GET("/get/:key", h.seedGet)

	kv := data.Group("/v1/kv/:key")
	kv.PUT("", h.putString)
	kv.GET("", h.getString)
	kv.DELETE("", h.deleteString)
	kv.GET("/ttl", h.getTTL)
	kv.PUT("/ttl", h.putTTL)
	kv.DELETE("/ttl", h.deleteTTL)
	kv.POST("/incr", h.incr)

	hash := data.Group("/v1/hash/:key")
	hash.PUT("", h.putHash)
	hash.GET("", h.getHash)
	hash.DELETE("", h.deleteHash)
	hash.GET("/:field", h.getField)
	hash.PUT("/:field", h.putField)
	hash.DELETE("/:field", h.deleteField)
	hash.POST("/:field/incr", h.incrField)
	return r
}

// auth requires "Authorization: Bearer <token>" when API_TOKEN is set: the
// full token may do anything, API_READ_TOKEN's only read (403 otherwise).
// Tokens are compared in constant time so they cannot be guessed by timing.
func (h *handler) auth() gin.HandlerFunc {
	if h.cfg.APIToken == "" {
		return func(c *gin.Context) { c.Next() }
	}
	full, read := []byte(h.cfg.APIToken), []byte(h.cfg.APIReadToken)
	return func(c *gin.Context) {
		got, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		switch {
		case ok && subtle.ConstantTimeCompare([]byte(got), full) == 1:
			c.Next()
		case ok && len(read) > 0 && subtle.ConstantTimeCompare([]byte(got), read) == 1:
			// The seed's /set writes through a GET.
			if c.Request.Method != http.MethodGet || strings.HasPrefix(c.FullPath(), "/set/") {
				h.respond(c, &Error{Code: CodeForbidden, Message: "this token may only read"})
				return
			}
			c.Next()
		default:
			h.respond(c, &Error{Code: CodeUnauthorized, Message: "missing or wrong bearer token"})
		}
	}
}

func (h *handler) home(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"message": "Welcome to DubeBox 🚀", "status": "running", "version": h.cfg.Version})
}

func (h *handler) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz answers 200 only while Redis answers PING, so that a load balancer
// sends no traffic to an instance that can only answer 503.
func (h *handler) readyz(c *gin.Context) {
	if err := h.store.Ping(c.Request.Context()); err != nil {
		h.log.Warn("readiness check failed", zap.Error(err))
		h.respond(c, &Error{Code: CodeUnavailable, Message: "not ready: " + reason(err)})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// reason names why Redis failed in words fit for a probe's answer; the full
// error goes to the log.
func reason(err error) string {
	if store.IsAuthError(err) {
		return "redis refused the credentials (REDIS_USERNAME, REDIS_PASSWORD)"
	}
	switch toAPIError(err).Code {
	case CodeTimeout:
		return "redis did not answer PING in time"
	case CodeUnavailable:
		return "redis is unreachable or refused the connection"
	default:
		return "redis answered PING with an error"
	}
}
