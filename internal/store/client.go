package store

import (
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/dubebox/dubebox/internal/setting"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Config is how the store reaches Redis and names its keys. Each field's
// env tag is the variable that sets it; internal/config reads, defaults,
// validates and logs them from these tags (see there for the tag syntax).
type Config struct {
	// Addr is the resolved host:port. Without REDIS_ADDR it comes from
	// REDIS_URL, or from the original tutorial's REDIS_HOST and REDIS_PORT.
	Addr string `env:"REDIS_ADDR" valid:"addr,optional"`
	// URL is redis://[user:password@]host:port[/db] (rediss:// for TLS). It
	// wins over REDIS_ADDR, REDIS_USERNAME, REDIS_PASSWORD and REDIS_DB.
	URL         string        `env:"REDIS_URL" secret:"url"`
	Username    string        `env:"REDIS_USERNAME"`
	Password    string        `env:"REDIS_PASSWORD" secret:"true"`
	DB          int           `env:"REDIS_DB" envDefault:"0" valid:"0..65536"`
	TLS         bool          `env:"REDIS_TLS"`
	Timeout     time.Duration `env:"REDIS_TIMEOUT" envDefault:"500ms" valid:"positive"`
	PoolSize    int           `env:"REDIS_POOL_SIZE" envDefault:"0" valid:"0..100000"`
	PoolTimeout time.Duration `env:"REDIS_POOL_TIMEOUT" envDefault:"0s" valid:"optional"`
	KeyPrefix   string        `env:"KEY_PREFIX" envDefault:"dubebox:"`

	// ClusterAddrs are seed nodes of a Redis Cluster; the client finds the
	// others. Every operation touches one key, so every route works there.
	ClusterAddrs []string `env:"REDIS_CLUSTER_ADDRS" valid:"addrs"`
	// SentinelAddrs and SentinelMaster find the primary through Sentinel and
	// follow it through a failover.
	SentinelAddrs    []string `env:"REDIS_SENTINEL_ADDRS" valid:"addrs"`
	SentinelMaster   string   `env:"REDIS_SENTINEL_MASTER"`
	SentinelUsername string   `env:"REDIS_SENTINEL_USERNAME"`
	SentinelPassword string   `env:"REDIS_SENTINEL_PASSWORD" secret:"true"`
	// ReadFromReplicas lets reads go to replicas (Cluster and Sentinel),
	// which may lag behind the primary by a little.
	ReadFromReplicas bool `env:"REDIS_READ_FROM_REPLICAS"`
	// WaitReplicas, when positive, makes every write wait until that many
	// replicas acknowledged it (Redis WAIT), for at most WaitTimeout.
	WaitReplicas int           `env:"REDIS_WAIT_REPLICAS" envDefault:"0" valid:"0..16"`
	WaitTimeout  time.Duration `env:"REDIS_WAIT_TIMEOUT" envDefault:"100ms" valid:"positive"`

	// MaxHashFields and MaxListLength bound how many fields a hash, and
	// how many values a list, may grow to through the API: a write that
	// would take one past its bound is refused and changes nothing. The
	// list's bound is what keeps LREM, which walks the whole list, short:
	// about 0.2 µs a value here, so 10,000 values block Redis about 2 ms
	// (100,000 blocked it 23 ms). No call walks a whole hash (reads page
	// with HSCAN, deletes UNLINK), so its bound is a bound on size.
	MaxHashFields int `env:"MAX_HASH_FIELDS" envDefault:"100000" valid:"1..4294967295"`
	MaxListLength int `env:"MAX_LIST_LENGTH" envDefault:"10000" valid:"1..4294967295"`
	// IdempotencyTTL is how long the answer of a write sent with an
	// Idempotency-Key is kept, beside its key, for retries to be given.
	IdempotencyTTL time.Duration `env:"IDEMPOTENCY_TTL" envDefault:"1h" valid:"positive"`

	Near NearConfig
}

// Validate checks the rules that span several of the store's settings.
// It names the variable to fix; config.Load turns its error into one that
// stops the start.
func (c Config) Validate() error {
	var set []string
	if c.URL != "" {
		set = append(set, "REDIS_URL")
	}
	if c.Addr != "" {
		set = append(set, "REDIS_ADDR")
	}
	if len(c.ClusterAddrs) > 0 {
		set = append(set, "REDIS_CLUSTER_ADDRS")
	}
	if len(c.SentinelAddrs) > 0 {
		set = append(set, "REDIS_SENTINEL_ADDRS")
	}
	// REDIS_URL winning over REDIS_ADDR is the one documented overlap.
	overlap := len(set) == 2 && set[0] == "REDIS_URL" && set[1] == "REDIS_ADDR"
	switch {
	case len(set) > 1 && !overlap:
		return &setting.Error{Var: set[len(set)-1], Reason: "set one of REDIS_ADDR (or REDIS_URL), REDIS_CLUSTER_ADDRS and REDIS_SENTINEL_ADDRS, not " + joinAnd(set)}
	case len(c.SentinelAddrs) > 0 && c.SentinelMaster == "":
		return &setting.Error{Var: "REDIS_SENTINEL_MASTER", Reason: "is required with REDIS_SENTINEL_ADDRS: the name the Sentinels monitor the primary under"}
	case c.SentinelMaster != "" && len(c.SentinelAddrs) == 0:
		return &setting.Error{Var: "REDIS_SENTINEL_ADDRS", Reason: "is required with REDIS_SENTINEL_MASTER"}
	case len(c.ClusterAddrs) > 0 && c.DB != 0:
		return &setting.Error{Var: "REDIS_DB", Value: fmt.Sprint(c.DB), Reason: "a Redis Cluster has only database 0"}
	case c.ReadFromReplicas && c.Topology() == "single":
		return &setting.Error{Var: "REDIS_READ_FROM_REPLICAS", Reason: "needs REDIS_CLUSTER_ADDRS or REDIS_SENTINEL_ADDRS"}
	case c.WaitReplicas > 0 && c.WaitTimeout >= c.Timeout:
		return &setting.Error{Var: "REDIS_WAIT_TIMEOUT", Value: c.WaitTimeout.String(),
			Reason: "must be shorter than REDIS_TIMEOUT (" + c.Timeout.String() + "), which bounds the whole write"}
	case c.WaitReplicas > 0 && c.ReadFromReplicas && c.Topology() == "sentinel":
		return &setting.Error{Var: "REDIS_WAIT_REPLICAS", Reason: "cannot be combined with REDIS_READ_FROM_REPLICAS behind Sentinel"}
	}
	return nil
}

func joinAnd(s []string) string {
	out := s[0]
	for _, v := range s[1:] {
		out += " and " + v
	}
	return out
}

// isFailoverClient says whether c is go-redis's client behind Sentinel,
// which NewUniversalClient makes as a *redis.Client whose address is a
// placeholder, not host:port.
func isFailoverClient(c *redis.Client) bool {
	_, _, err := net.SplitHostPort(c.Options().Addr)
	return err != nil
}

// Topology names how the store reaches Redis: "single", "cluster" or
// "sentinel".
func (c Config) Topology() string {
	switch {
	case len(c.ClusterAddrs) > 0:
		return "cluster"
	case len(c.SentinelAddrs) > 0:
		return "sentinel"
	}
	return "single"
}

// Resolve fills what is derived from other settings, so that the values
// logged at start are the ones in force: a pool of 10 connections per CPU
// (go-redis's own default), and a pool wait as long as REDIS_TIMEOUT
// (go-redis would wait REDIS_TIMEOUT+1s).
func (c *Config) Resolve() {
	if c.PoolSize == 0 {
		c.PoolSize = 10 * runtime.GOMAXPROCS(0)
	}
	if c.PoolTimeout == 0 {
		c.PoolTimeout = c.Timeout
	}
}

// Options returns the client options for c, tuned as Tune says:
// redis.NewUniversalClient then makes a Cluster client, a Sentinel
// (failover) client or a plain one. The pool size is per node.
func (c Config) Options() *redis.UniversalOptions {
	o := &redis.UniversalOptions{
		Addrs:       []string{c.Addr},
		Username:    c.Username,
		Password:    c.Password,
		DB:          c.DB,
		PoolSize:    c.PoolSize,
		PoolTimeout: c.PoolTimeout,
	}
	switch c.Topology() {
	case "cluster":
		o.Addrs, o.IsClusterMode = c.ClusterAddrs, true
		// Reads go to a replica of the key's shard.
		o.ReadOnly = c.ReadFromReplicas
	case "sentinel":
		o.Addrs, o.MasterName = c.SentinelAddrs, c.SentinelMaster
		o.SentinelUsername, o.SentinelPassword = c.SentinelUsername, c.SentinelPassword
		// Reads go to the primary or a replica at random.
		o.RouteRandomly = c.ReadFromReplicas
	}
	if c.TLS {
		// The server name comes from each address dialed, so that every
		// node of a Cluster is verified against its own name.
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return Tune(o, c.Timeout)
}

// Tune sets the client options the store's promises rest on; Options and
// the tests both build their clients through it. timeout is REDIS_TIMEOUT.
func Tune(o *redis.UniversalOptions, timeout time.Duration) *redis.UniversalOptions {
	o.DialTimeout = timeout
	o.ReadTimeout = timeout
	o.WriteTimeout = timeout
	if o.PoolTimeout == 0 {
		o.PoolTimeout = timeout
	}
	// Honour the per-call deadline the store sets, so a stalled Redis costs
	// a request REDIS_TIMEOUT and no more.
	o.ContextTimeoutEnabled = true
	// A dead Redis is answered 503 at once: retrying the command or the dial
	// inside the client would only turn that into a 504 at the deadline.
	// Broken pooled connections are still detected and replaced on checkout.
	o.MaxRetries = -1
	o.DialerRetries = 1
	// One pool: REDIS_POOL_SIZE is then the real bound on connections,
	// pipelines included.
	o.PipelinePoolSize = -1
	// RESP2: the store needs no push notifications, and under RESP3 go-redis
	// checks the socket for pending pushes around every command, which
	// costs a system call and about 5% of the CPU of a GET (bench/results.md).
	o.Protocol = 2
	// CLIENT SETINFO and CLIENT MAINT_NOTIFICATIONS cost a round trip per new
	// connection, and Redis 7.0 refuses both.
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return o
}
