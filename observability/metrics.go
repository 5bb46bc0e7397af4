package observability

import (
	"context"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// Metrics holds DubeBox's own Prometheus registry and the collectors the
// middleware, the Redis hook and the store write to. Its metric names are a
// contract with the dashboard and the alert rules: do not rename them alone.
//
// The collectors are reached only through its methods, so that what is
// recorded, and how its labels are bounded, is written once, here.
type Metrics struct {
	registry *prometheus.Registry

	httpRequests   *prometheus.CounterVec
	httpDuration   *prometheus.HistogramVec
	httpInFlight   prometheus.Gauge
	rateLimited    prometheus.Counter
	cacheLookups   *prometheus.CounterVec
	redisCommands  *prometheus.CounterVec
	redisDuration  *prometheus.HistogramVec
	redisFailovers prometheus.Counter
	redirections   *prometheus.CounterVec
	redirectMoved  prometheus.Counter
	redirectAsk    prometheus.Counter
	cacheHit       map[string]prometheus.Counter
	cacheMiss      map[string]prometheus.Counter
	nearCache      *prometheus.CounterVec
	nearHit        prometheus.Counter
	nearMiss       prometheus.Counter
	nearEviction   prometheus.Counter
	nearInvalid    prometheus.Counter
	nearTracking   prometheus.Gauge
	nearEnabled    prometheus.Gauge

	sseStreams   *prometheus.GaugeVec
	sseDelivered *prometheus.CounterVec
	sseDropped   *prometheus.CounterVec
	published    prometheus.Counter

	httpExemplars  *exemplarGate
	redisExemplars *exemplarGate
}

// NewMetrics registers every DubeBox collector, the Go and process
// collectors and dubebox_build_info{version,goversion} on a new registry.
// readOps are the store's read operations, named by the store: their hit and
// miss series exist from the first scrape.
func NewMetrics(version string, readOps []string) *Metrics {
	reg := prometheus.NewRegistry()
	// The exemplar gates need the histograms' buckets too.
	httpBuckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	redisBuckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	m := &Metrics{
		registry: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dubebox_http_requests_total",
			Help: "HTTP requests answered, by method, route template and status code.",
		}, []string{"method", "route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dubebox_http_request_duration_seconds",
			Help:    "Time from the request's arrival to its response, by method and route template.",
			Buckets: httpBuckets,
		}, []string{"method", "route"}),
		httpInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dubebox_http_requests_in_flight",
			Help: "HTTP requests being served now.",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dubebox_http_rate_limited_total",
			Help: "Requests refused with 429 by the per-client rate limit (RATE_LIMIT_RPS).",
		}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dubebox_cache_lookups_total",
			Help: "Reads of the store by operation and result (hit or miss): the cache hit ratio.",
		}, []string{"operation", "result"}),
		redisCommands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dubebox_redis_commands_total",
			Help: "Redis commands sent, by command, status (ok, nil or error) and node (host:port).",
		}, []string{"command", "status", "node"}),
		redisDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dubebox_redis_command_duration_seconds",
			Help:    "Round-trip time of Redis commands by command and node (a pipeline or MULTI/EXEC counts once, as \"pipeline\").",
			Buckets: redisBuckets,
		}, []string{"command", "node"}),
		redisFailovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dubebox_redis_failovers_total",
			Help: "Times the API found a new primary: behind Sentinel, or for a Cluster shard.",
		}),
		redirections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dubebox_redis_redirections_total",
			Help: "MOVED and ASK replies of a Redis Cluster that the client followed, by kind (moved or ask).",
		}, []string{"kind"}),
		httpExemplars:  newExemplarGate(httpBuckets),
		redisExemplars: newExemplarGate(redisBuckets),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "dubebox_build_info",
		Help:        "Always 1; its labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	m.nearCache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dubebox_near_cache_events_total",
		Help: "What the near cache (NEAR_CACHE_SIZE) did: hit, miss, eviction (over its bounds) or invalidation (a write, here or elsewhere).",
	}, []string{"event"})
	m.nearHit, m.nearMiss = m.nearCache.WithLabelValues("hit"), m.nearCache.WithLabelValues("miss")
	m.nearEviction, m.nearInvalid = m.nearCache.WithLabelValues("eviction"), m.nearCache.WithLabelValues("invalidation")
	m.nearTracking = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dubebox_near_cache_tracking",
		Help: "1 while Redis tracks the keys for the near cache (it serves from memory only then), else 0; 0 too while the near cache is off (see dubebox_near_cache_enabled).",
	})
	m.nearEnabled = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dubebox_near_cache_enabled",
		Help: "1 when the near cache is on (NEAR_CACHE_SIZE above 0, one Redis server), else 0.",
	})
	m.sseStreams = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dubebox_sse_streams",
		Help: "Server-Sent Event streams open now, by kind: channel (a subscription), kv or hash (a key watch).",
	}, []string{"kind"})
	m.sseDelivered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dubebox_sse_events_delivered_total",
		Help: "Events written to streams, by kind: a channel's messages (one per subscriber), a watched key's states.",
	}, []string{"kind"})
	m.sseDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dubebox_sse_dropped_total",
		Help: "Streams the service ended, and messages it could not deliver, by kind and reason: slow_reader (a stream that stopped reading, ended), redis_lost (its subscription or tracking lost, ended with an error event), not_utf8 (a message published around DubeBox that JSON cannot carry, skipped).",
	}, []string{"kind", "reason"})
	m.published = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dubebox_channel_messages_published_total",
		Help: "Messages published to channels through this instance.",
	})
	for _, kind := range SSEKinds {
		m.sseStreams.WithLabelValues(kind)
		m.sseDelivered.WithLabelValues(kind)
		for _, reason := range SSEDropReasons {
			m.sseDropped.WithLabelValues(kind, reason)
		}
	}
	reg.MustRegister(
		m.sseStreams, m.sseDelivered, m.sseDropped, m.published,
		m.nearCache, m.nearTracking, m.nearEnabled,
		m.httpRequests, m.httpDuration, m.httpInFlight, m.rateLimited, m.cacheLookups,
		m.redisCommands, m.redisDuration, m.redisFailovers, m.redirections, buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.redirectMoved = m.redirections.WithLabelValues("moved")
	m.redirectAsk = m.redirections.WithLabelValues("ask")
	// Resolve the label sets of the store's read operations once: the hot
	// path then skips WithLabelValues' hashing, and every series exists from
	// the first scrape so that rate() and the hit ratio are never empty.
	m.cacheHit = map[string]prometheus.Counter{}
	m.cacheMiss = map[string]prometheus.Counter{}
	for _, op := range readOps {
		m.cacheHit[op] = m.cacheLookups.WithLabelValues(op, "hit")
		m.cacheMiss[op] = m.cacheLookups.WithLabelValues(op, "miss")
	}
	return m
}

// Handler serves the registry: Prometheus text by default, OpenMetrics (with
// exemplars) to a scraper that asks for it.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		Registry:          m.registry,
	})
}

// Gather reads every metric, as a scrape would: for tests and tools.
func (m *Metrics) Gather() ([]*dto.MetricFamily, error) { return m.registry.Gather() }

// Register adds a collector of the caller's (the Redis pool's statistics).
func (m *Metrics) Register(c prometheus.Collector) error { return m.registry.Register(c) }

// PrimaryChanged counts a new primary (dubebox_redis_failovers_total).
func (m *Metrics) PrimaryChanged() { m.redisFailovers.Inc() }

// Redirected counts a MOVED or ASK ("moved", "ask") the store followed.
func (m *Metrics) Redirected(kind string) {
	switch kind {
	case "moved":
		m.redirectMoved.Inc()
	case "ask":
		m.redirectAsk.Inc()
	}
}

// RateLimited counts a request refused with 429 by a per-client limit.
func (m *Metrics) RateLimited() { m.rateLimited.Inc() }

// RequestStarted and RequestEnded track the requests in flight.
func (m *Metrics) RequestStarted() { m.httpInFlight.Inc() }

// RequestEnded is told that a request RequestStarted counted was answered.
func (m *Metrics) RequestEnded() { m.httpInFlight.Dec() }

// NearEnabled says that the near cache is on.
func (m *Metrics) NearEnabled() { m.nearEnabled.Set(1) }

// NearTracking says whether Redis tracks the keys for the near cache.
func (m *Metrics) NearTracking(up bool) {
	if up {
		m.nearTracking.Set(1)
	} else {
		m.nearTracking.Set(0)
	}
}

// Readiness registers dubebox_ready: 1 while check (the readiness probe's
// own, store.Ping) passes, asked at each scrape. The check runs under a
// trace context that is not sampled, so that scrapes make no traces, as
// /metrics itself makes none.
func (m *Metrics) Readiness(check func(context.Context) error) error {
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Remote: true,
	}))
	return m.registry.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dubebox_ready",
		Help: "1 while /readyz would answer 200 (Redis answers; on a Cluster, its state is ok and every primary answers), else 0.",
	}, func() float64 {
		if check(unsampled) != nil {
			return 0
		}
		return 1
	}))
}

// otherMethod is the method label of a request whose method is not one of
// HTTP's own: any token is a valid method, so taking it as it came would let
// a client grow the number of series without bound.
const otherMethod = "other"

// methodLabel bounds the method label to the methods of RFC 9110 (and
// PATCH) plus otherMethod.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return otherMethod
}

// ObserveRequest counts and times one answered request by method, route
// template and status, with the trace id of ctx's span as exemplar. route
// must already be bounded (a template, never a raw path); the method is
// bounded here.
func (m *Metrics) ObserveRequest(ctx context.Context, method, route string, status int, d time.Duration) {
	method = methodLabel(method)
	m.httpRequests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.httpExemplars.observe(ctx, m.httpDuration.WithLabelValues(method, route), d.Seconds())
}

// The kinds of stream, and the reasons a stream or a message is dropped:
// the label values of the stream metrics.
var (
	SSEKinds       = []string{"channel", "kv", "hash"}
	SSEDropReasons = []string{"slow_reader", "redis_lost", "not_utf8"}
)

// StreamOpened counts a stream of kind as open.
func (m *Metrics) StreamOpened(kind string) { m.sseStreams.WithLabelValues(kind).Inc() }

// StreamClosed counts a stream of kind as closed.
func (m *Metrics) StreamClosed(kind string) { m.sseStreams.WithLabelValues(kind).Dec() }

// Delivered counts an event written to a stream of kind.
func (m *Metrics) Delivered(kind string) { m.sseDelivered.WithLabelValues(kind).Inc() }

// Dropped counts a stream of kind ended, or a message skipped, for reason
// (one of SSEDropReasons).
func (m *Metrics) Dropped(kind, reason string) { m.sseDropped.WithLabelValues(kind, reason).Inc() }

// Published counts a message published to a channel.
func (m *Metrics) Published() { m.published.Inc() }

// CountStream counts an answered stream as ObserveRequest counts a
// request, without timing it: a stream's length is its client's choice,
// and would swamp the latency histogram.
func (m *Metrics) CountStream(method, route string, status int) {
	m.httpRequests.WithLabelValues(methodLabel(method), route, strconv.Itoa(status)).Inc()
}

// NearHit counts a read the near cache answered.
func (m *Metrics) NearHit() { m.nearHit.Inc() }

// NearMiss counts a read the near cache sent on to Redis.
func (m *Metrics) NearMiss() { m.nearMiss.Inc() }

// NearEviction counts an entry dropped to stay within the cache's bounds.
func (m *Metrics) NearEviction() { m.nearEviction.Inc() }

// NearInvalidation counts a key invalidated by a write.
func (m *Metrics) NearInvalidation() { m.nearInvalid.Inc() }

// Lookup counts one read of the store as a hit or a miss.
func (m *Metrics) Lookup(operation string, hit bool) {
	counters := m.cacheMiss
	if hit {
		counters = m.cacheHit
	}
	if c, ok := counters[operation]; ok {
		c.Inc()
		return
	}
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cacheLookups.WithLabelValues(operation, result).Inc()
}

// ExemplarInterval is how often one bucket of one histogram series takes a
// new exemplar. Prometheus keeps the exemplar it finds in each bucket at
// each scrape (every few seconds), so replacing it on every request only
// made garbage: about 3 µs and 20 allocations per request for the two
// histograms a request feeds. A slow request lands in a bucket that rarely
// fills, so it still gets its exemplar.
const ExemplarInterval = time.Second

// exemplarGate decides, per series and bucket, whether an observation
// carries an exemplar: at most one per ExemplarInterval.
type exemplarGate struct {
	buckets []float64
	mu      sync.RWMutex
	last    map[prometheus.Observer][]atomic.Int64 // unix nanoseconds of the last exemplar, per bucket (+Inf last)
}

func newExemplarGate(buckets []float64) *exemplarGate {
	return &exemplarGate{buckets: buckets, last: map[prometheus.Observer][]atomic.Int64{}}
}

// observe records v on o, with the trace id of ctx's span as exemplar when
// that span is sampled and the gate lets one through, so that a point on a
// latency panel leads to a trace.
func (g *exemplarGate) observe(ctx context.Context, o prometheus.Observer, v float64) {
	sc := trace.SpanContextFromContext(ctx)
	if eo, ok := o.(prometheus.ExemplarObserver); ok && sc.IsSampled() && g.due(o, v) {
		eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String()})
		return
	}
	o.Observe(v)
}

// due reports whether v's bucket of series o has gone ExemplarInterval
// without an exemplar, and if so claims the slot.
func (g *exemplarGate) due(o prometheus.Observer, v float64) bool {
	g.mu.RLock()
	last, ok := g.last[o]
	g.mu.RUnlock()
	if !ok {
		// Series are bounded (label values come from route templates and
		// command names), so this map is too.
		g.mu.Lock()
		if last, ok = g.last[o]; !ok {
			last = make([]atomic.Int64, len(g.buckets)+1)
			g.last[o] = last
		}
		g.mu.Unlock()
	}
	slot := &last[sort.SearchFloat64s(g.buckets, v)]
	now := time.Now().UnixNano()
	prev := slot.Load()
	return now-prev >= int64(ExemplarInterval) && slot.CompareAndSwap(prev, now)
}

// PoolCollector exports go-redis's connection pool statistics, read at
// scrape time, as dubebox_redis_pool_*.
type PoolCollector struct {
	stats   func() *redis.PoolStats
	hits    *prometheus.Desc
	misses  *prometheus.Desc
	timeout *prometheus.Desc
	idle    *prometheus.Desc
	total   *prometheus.Desc
}

// NewPoolCollector returns a collector over stats (a client's PoolStats
// method).
func NewPoolCollector(stats func() *redis.PoolStats) *PoolCollector {
	return &PoolCollector{
		stats:   stats,
		hits:    prometheus.NewDesc("dubebox_redis_pool_hits_total", "Times a free connection was found in the pool.", nil, nil),
		misses:  prometheus.NewDesc("dubebox_redis_pool_misses_total", "Times no free connection was found in the pool and one was dialed or awaited.", nil, nil),
		timeout: prometheus.NewDesc("dubebox_redis_pool_timeouts_total", "Times a caller gave up waiting for a pooled connection (REDIS_POOL_TIMEOUT).", nil, nil),
		idle:    prometheus.NewDesc("dubebox_redis_pool_idle_connections", "Idle connections in the pool.", nil, nil),
		total:   prometheus.NewDesc("dubebox_redis_pool_total_connections", "Connections in the pool, idle and in use.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.hits
	ch <- c.misses
	ch <- c.timeout
	ch <- c.idle
	ch <- c.total
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(c.misses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(c.timeout, prometheus.CounterValue, float64(s.Timeouts))
	ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(s.IdleConns))
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(s.TotalConns))
}
