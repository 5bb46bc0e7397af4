// Package api is DubeBox's HTTP layer: the Gin router, the routes kept from
// the original Flask tutorial (seed.go) and those of /v1 (a file per
// resource: strings, hashes, lists, keys, channels, and the key watches,
// with the event streams they share in sse.go), the middleware (middleware.go,
// auth.go, limits.go), input validation (input.go), the JSON encoding of
// answers (encode.go) and the one mapping of errors to statuses
// (errors.go). It knows the store only through the small interfaces each
// resource's file declares.
package api

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/dubebox/dubebox/internal/setting"
	"github.com/dubebox/dubebox/observability"
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// Store is everything the HTTP layer needs from the store: the union of
// what each resource's routes use.
type Store interface {
	// Ready says whether Redis can serve every key: a recent check, reused.
	Ready(ctx context.Context) error
	stringStore
	txStore
	hashStore
	listStore
	keyStore
	channelStore
	watchStore
}

// Config holds what the router needs besides its dependencies. Each
// field's env tag is the variable that sets it; internal/config reads,
// defaults, validates and logs them from these tags.
type Config struct {
	// ServiceName names the server in span attributes: the tracer's
	// OTEL_SERVICE_NAME, which run passes on.
	ServiceName string
	// Version is reported by GET /.
	Version string
	// MaxKeyBytes bounds keys and hash field names.
	MaxKeyBytes int `env:"MAX_KEY_BYTES" envDefault:"512" valid:"1..1048576"`
	// MaxValueBytes bounds values; request bodies are bounded in proportion.
	MaxValueBytes int `env:"MAX_VALUE_BYTES" envDefault:"1048576" valid:"1..536870912"`
	// MaxPageBytes bounds the values one answer carries (a list page or
	// pop, a hash page, a batch read): a page stops before the value that
	// would take it past this, and says where to go on; one value always
	// comes, so a page holds at most max(MaxPageBytes, MaxValueBytes).
	MaxPageBytes int `env:"MAX_PAGE_BYTES" envDefault:"1048576" valid:"1024..536870912"`
	// MaxHeaderBytes bounds the request's header names and values: past
	// it, 431 in the API's error shape. The HTTP server's own cap sits
	// HeaderSlack above it (see HeaderCap).
	MaxHeaderBytes int `env:"MAX_HEADER_BYTES" envDefault:"16384" valid:"1024..1048576"`
	// MaxInflight bounds the data requests served at once: past it a
	// request is refused at once with 503 overloaded, before its body is
	// read, so that memory is bounded by MaxInflight times what one
	// request may hold (its body and its answer).
	MaxInflight int `env:"MAX_INFLIGHT_REQUESTS" envDefault:"32" valid:"1..1048576"`
	// APIToken, when set, is required as a bearer token on every data
	// route: one token, or two separated by a comma while rotating (the new
	// and the old), each at least MinTokenBytes long.
	APIToken string `env:"API_TOKEN" secret:"true"`
	// APIReadToken, when set (with APIToken), is a bearer token (or two)
	// that may only read: GET on the data routes, and the batch read.
	APIReadToken string `env:"API_READ_TOKEN" secret:"true"`
	// AllowNoAuth lets the service run without API_TOKEN on an address
	// other than loopback, and answer any Host: an explicit choice.
	AllowNoAuth bool `env:"ALLOW_NO_AUTH"`
	// TrustedProxies are the addresses (CIDRs or IPs) of the load
	// balancers or proxies in front: from them, and only from them, the
	// client's address is taken from X-Forwarded-For (for the failed-auth
	// budget, the rate limit and the log), and a trace context
	// (traceparent) is followed. Empty: nothing a client sends is taken on
	// faith.
	TrustedProxies []string `env:"TRUSTED_PROXIES"`
	// CORSAllowedOrigins are the origins (https://app.example.com) whose
	// pages may call the API from a browser: preflights are answered and
	// answers carry the CORS headers. Empty: no CORS headers, and pages on
	// other origins cannot call the API. * (any origin) needs API_TOKEN.
	CORSAllowedOrigins []string `env:"CORS_ALLOWED_ORIGINS"`
	// MetricsElsewhere says that /metrics is served on METRICS_ADDR, not
	// on the API's listener; run sets it.
	MetricsElsewhere bool
	// RateLimitRPS, when positive, limits each client address to this many
	// requests per second on the data routes, with bursts of RateLimitBurst.
	RateLimitRPS float64 `env:"RATE_LIMIT_RPS" envDefault:"0" valid:"0.."`
	// RateLimitBurst is the bucket's size; 0 means RateLimitRPS rounded up.
	// It is 0 while the limit is off.
	RateLimitBurst int `env:"RATE_LIMIT_BURST" envDefault:"0" valid:"0..1048576"`
	// MaxMessageBytes bounds a message published to a channel. Messages
	// are notifications (a large payload belongs in a key the message
	// names): every stream may hold one while it writes it, so the
	// streams' memory is bounded by MaxSSEStreams times this.
	MaxMessageBytes int `env:"MAX_MESSAGE_BYTES" envDefault:"65536" valid:"1..16777216"`
	// MaxTxOps bounds the operations of one transaction (POST /v1/tx),
	// which Redis runs as one script, holding every other client while it
	// runs (docs/reference.md#transactions has the measurement behind the
	// default).
	MaxTxOps int `env:"MAX_TX_OPS" envDefault:"64" valid:"1..10000"`
	// MaxSSEStreams bounds the event streams (channel subscriptions and
	// key watches) open at once; past it a stream is refused with 503
	// overloaded. Streams do not count against MAX_INFLIGHT_REQUESTS.
	MaxSSEStreams int `env:"MAX_SSE_STREAMS" envDefault:"256" valid:"1..1048576"`
	// SSEHeartbeat is how often a quiet stream sends a comment, so that
	// proxies and load balancers keep it open.
	SSEHeartbeat time.Duration `env:"SSE_HEARTBEAT" envDefault:"15s" valid:"positive"`
	// SSEWriteTimeout bounds each write to a stream: a client that stops
	// reading is dropped once a write waits this long.
	SSEWriteTimeout time.Duration `env:"SSE_WRITE_TIMEOUT" envDefault:"10s" valid:"positive"`
}

// HeaderSlack is how far above MAX_HEADER_BYTES the HTTP server's own cap
// on a request's line and headers sits: room for the request line and the
// per-line overhead, so that a header block over MAX_HEADER_BYTES is
// refused by the router in the API's JSON shape, while what a connection
// can make the server hold before any handler runs stays close to
// MAX_HEADER_BYTES.
const HeaderSlack = 16 << 10

// HeaderCap is the cap for http.Server.MaxHeaderBytes.
func (c Config) HeaderCap() int { return c.MaxHeaderBytes + HeaderSlack }

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

// Validate checks the rules that span several of the router's settings.
func (c Config) Validate() error {
	switch {
	case c.RateLimitRPS > 0 && c.RateLimitBurst < 1:
		return &setting.Error{Var: "RATE_LIMIT_BURST", Value: "0", Reason: "must be at least 1 while RATE_LIMIT_RPS is set"}
	case c.APIReadToken != "" && c.APIToken == "":
		return &setting.Error{Var: "API_READ_TOKEN", Reason: "needs API_TOKEN too: with only a read token nobody could write"}
	}
	if reason := checkOrigins(c.CORSAllowedOrigins, c.APIToken != ""); reason != "" {
		return &setting.Error{Var: "CORS_ALLOWED_ORIGINS", Value: strings.Join(c.CORSAllowedOrigins, ","), Reason: reason}
	}
	if reason := checkPrefixes(c.TrustedProxies); reason != "" {
		return &setting.Error{Var: "TRUSTED_PROXIES", Value: strings.Join(c.TrustedProxies, ","), Reason: reason}
	}
	for _, v := range []struct{ name, value string }{{"API_TOKEN", c.APIToken}, {"API_READ_TOKEN", c.APIReadToken}} {
		if reason := checkTokens(v.value); reason != "" {
			return &setting.Error{Var: v.name, Reason: reason}
		}
	}
	for _, full := range tokens(c.APIToken) {
		for _, read := range tokens(c.APIReadToken) {
			if full == read {
				return &setting.Error{Var: "API_READ_TOKEN", Reason: "must differ from API_TOKEN"}
			}
		}
	}
	return nil
}

// Deps are the router's collaborators, built by run.
type Deps struct {
	Store          Store
	Log            *zap.Logger
	Metrics        *observability.Metrics
	TracerProvider trace.TracerProvider
	// Done, when closed, ends every open stream with an end event: run
	// passes its context's, so that a shutdown is not held up by streams.
	Done <-chan struct{}
}

type handler struct {
	store   Store
	log     *zap.Logger
	metrics *observability.Metrics
	cfg     Config
	tracer  trace.Tracer
	done    <-chan struct{}
	// maxBody bounds a request body: room for a value at its largest, even
	// when JSON escaping doubles it, and for the envelope around it.
	maxBody int64
}

// New returns the HTTP handler. Its middleware, in this order: request id,
// the trace context of untrusted clients dropped, tracing (otelgin), the
// access log (one line per request, failures and panics included), panic
// recovery, metrics, CORS (when CORS_ALLOWED_ORIGINS is set; it answers
// preflights), the limits on the URL and the headers; then, on the data
// routes, the data answers' headers, the browser guard (cross-origin
// writes, the Host of a token-less instance), auth (with its own limit on
// failures), the rate limit, the bound on requests in flight (on the
// event streams, the bound on streams instead), the refusal of query
// parameters a route does not take and of conditions it does not take.
// Every GET route answers HEAD; OPTIONS is answered on every route.
func New(cfg Config, deps Deps) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	h := &handler{
		store:   deps.Store,
		log:     deps.Log,
		metrics: deps.Metrics,
		cfg:     cfg,
		tracer:  deps.TracerProvider.Tracer("github.com/dubebox/dubebox/internal/api"),
		done:    deps.Done,
		maxBody: 2*int64(cfg.MaxValueBytes) + 64<<10,
	}
	doc, err := OpenAPI()
	if err != nil {
		// The document is embedded and the tests parse it: this is a build
		// that was never tested.
		panic(err)
	}
	query, err := queryParams(doc)
	if err != nil {
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
	// Client addresses come from the connection, and from X-Forwarded-For
	// only when the connection comes from a trusted proxy. The addresses
	// were checked by Validate.
	_ = r.SetTrustedProxies(cfg.TrustedProxies)

	r.Use(
		assignRequestID,
		untrustedTrace(prefixes(cfg.TrustedProxies)),
		serverSpans(cfg.ServiceName, deps.TracerProvider, observability.Propagator()),
		h.accessLog(),
		h.recoverPanics,
		httpMetrics(deps.Metrics),
	)
	if policy := corsPolicy(cfg.CORSAllowedOrigins); policy != nil {
		r.Use(policy)
	}
	r.Use(h.headerLimit(cfg.MaxHeaderBytes))
	r.NoRoute(h.handle(func(*gin.Context) error {
		return &Error{Code: CodeNotFound, Message: "no such route"}
	}))
	r.NoMethod(h.handle(h.noMethod))

	get(&r.RouterGroup, "/", h.home)
	get(&r.RouterGroup, "/healthz", h.healthz)
	get(&r.RouterGroup, "/readyz", h.handle(h.readyz))
	if !cfg.MetricsElsewhere {
		get(&r.RouterGroup, "/metrics", gin.WrapH(deps.Metrics.Handler()))
	}
	get(&r.RouterGroup, "/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", doc) })
	get(&r.RouterGroup, "/docs", h.handle(h.docsAsset))
	get(&r.RouterGroup, "/docs/:asset", h.handle(h.docsAsset))

	data := r.Group("/", dataHeaders, h.browserGuard(), h.auth(newClientLimiter(authFailureRPS, authFailureBurst)))
	if cfg.RateLimitRPS > 0 {
		data.Use(h.rateLimit(newClientLimiter(cfg.RateLimitRPS, max(cfg.RateLimitBurst, 1))))
	}
	// Streams are bounded by their own limit, not by the one on requests
	// in flight, which they would hold for as long as they are open.
	streams := data.Group("/", h.streamLimit(cfg.MaxSSEStreams), h.refuseUnknownQuery(query), h.refuseConditions)
	get(streams, "/v1/channels/:channel/events", h.handle(h.subscribe))
	get(streams, "/v1/kv/:key/events", h.handle(h.watchKey("kv", typeString)))
	get(streams, "/v1/hash/:key/events", h.handle(h.watchKey("hash", typeHash)))
	data.Use(h.inflight(cfg.MaxInflight), h.refuseUnknownQuery(query), h.refuseConditions)
	data.POST("/v1/channels/:channel/messages", h.handle(h.publish))
	data.POST(txPath, h.handle(h.tx))
	// The tutorial's write through a GET; HEAD must not write, so it has
	// none.
	data.GET("/set/:key/:value", h.handle(h.seedSet))
	get(data, "/get/:key", h.handle(h.seedGet))

	// Gin reads an escaped colon as a colon, not the start of a parameter.
	data.POST(strings.ReplaceAll(batchGetPath, ":", "\\:"), h.handle(h.batchGet))
	kv := data.Group("/v1/kv/:key")
	kv.PUT("", h.handle(h.putString))
	get(kv, "", h.handle(h.getString))
	kv.DELETE("", h.handle(h.deleteKey(typeString)))
	get(kv, "/ttl", h.handle(h.ttlOf(typeString, h.store.TTL)))
	kv.PUT("/ttl", h.handle(h.putTTL(typeString)))
	kv.DELETE("/ttl", h.handle(h.ttlOf(typeString, h.store.Persist)))
	kv.POST("/incr", h.handle(h.incr))

	// What every key has, whatever its type: hashes and lists get their
	// TTL here, where no field name can collide with it.
	get(data, "/v1/keys", h.handle(h.listKeys))
	keys := data.Group("/v1/keys/:key")
	get(keys, "", h.handle(h.keyInfo))
	keys.DELETE("", h.handle(h.deleteKey(anyType)))
	get(keys, "/ttl", h.handle(h.ttlOf(anyType, h.store.TTL)))
	keys.PUT("/ttl", h.handle(h.putTTL(anyType)))
	keys.DELETE("/ttl", h.handle(h.ttlOf(anyType, h.store.Persist)))

	hash := data.Group("/v1/hash/:key")
	hash.PUT("", h.handle(h.putHash))
	get(hash, "", h.handle(h.getHash))
	hash.DELETE("", h.handle(h.deleteKey(typeHash)))
	get(hash, "/:field", h.handle(h.getField))
	hash.PUT("/:field", h.handle(h.putField))
	hash.DELETE("/:field", h.handle(h.deleteField))
	hash.POST("/:field/incr", h.handle(h.incrField))

	list := data.Group("/v1/list/:key")
	get(list, "", h.handle(h.getList))
	list.DELETE("", h.handle(h.deleteKey(typeList)))
	get(list, "/length", h.handle(h.listLength))
	list.POST("/push", h.handle(h.push))
	list.POST("/pop", h.handle(h.pop))
	list.POST("/remove", h.handle(h.removeValues))
	list.POST("/trim", h.handle(h.trim))
	return r
}

// get serves a GET route and HEAD on the same path, as RFC 9110 asks of
// every resource that answers GET: the same handlers, whose answer's body
// the HTTP server drops for HEAD (it keeps the headers and the length).
func get(g *gin.RouterGroup, path string, handlers ...gin.HandlerFunc) {
	g.GET(path, handlers...)
	g.HEAD(path, handlers...)
}

// noMethod answers a method the path does not serve: OPTIONS with 204 and
// the methods it does serve, in Allow (Gin has set it); any other with 405
// and the same Allow.
func (h *handler) noMethod(c *gin.Context) error {
	c.Header("Allow", c.Writer.Header().Get("Allow")+", OPTIONS")
	if c.Request.Method == http.MethodOptions {
		c.Status(http.StatusNoContent)
		return nil
	}
	return &Error{Code: CodeMethodNotAllowed, Message: "method not allowed on this route; Allow lists those it takes"}
}

func (h *handler) home(c *gin.Context) {
	h.reply(c, http.StatusOK, homeResponse{Message: "Welcome to DubeBox 🚀", Status: "running", Version: h.cfg.Version})
}

type homeResponse struct {
	Message string `json:"message"`
	Status  string `json:"status"`
	Version string `json:"version"`
}

type statusResponse struct {
	Status string `json:"status"`
}

func (h *handler) healthz(c *gin.Context) {
	h.reply(c, http.StatusOK, statusResponse{Status: "ok"})
}

// readyz answers 200 only while Redis answers (a check at most a second
// old), so that a load balancer sends no traffic to an instance that can
// only answer 503. The probe is open to anyone, so its answer says only
// that the instance is not ready; why (unreachable, wrong credentials) is
// in the request's log line.
func (h *handler) readyz(c *gin.Context) error {
	if err := h.store.Ready(c.Request.Context()); err != nil {
		return &Error{Code: CodeUnavailable, Message: "not ready: the store does not answer", Cause: fmt.Errorf("%s: %w", reason(err), err)}
	}
	h.reply(c, http.StatusOK, statusResponse{Status: "ready"})
	return nil
}
