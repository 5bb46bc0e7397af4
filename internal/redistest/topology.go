package redistest

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Topology is one way of running Redis that the store must work on: a
// single server, a Cluster, or a primary with replicas behind Sentinel.
type Topology struct {
	Name string
	// Nodes are the data nodes' addresses (not the Sentinels').
	Nodes []string
	opts  redis.UniversalOptions
}

// Options returns a copy of the client options that reach the topology.
func (tp Topology) Options() *redis.UniversalOptions {
	o := tp.opts
	o.Addrs = append([]string(nil), tp.opts.Addrs...)
	return &o
}

// SentinelMaster is the name the Sentinel fixtures monitor their primary
// under.
const SentinelMaster = "dubebox"

// Cluster is a Redis Cluster of three primaries with the same number of
// replicas each.
type Cluster struct {
	Nodes []*Server
	// replicas is how many replicas each primary has.
	replicas int
}

// Topology returns the options that reach the cluster.
func (c *Cluster) Topology() Topology {
	var seeds []string
	for _, n := range c.Nodes {
		seeds = append(seeds, n.Addr)
	}
	return Topology{Name: "cluster", Nodes: seeds, opts: redis.UniversalOptions{Addrs: seeds, IsClusterMode: true, DisableIdentity: true}}
}

// Stop kills every node.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.Kill()
	}
}

// Cluster node ports are taken from clusterPortMin to clusterPortMax. A
// node also listens on its bus port, port + 10000, which must stay below the
// kernel's ephemeral range (32768 and up on Linux): there an outgoing
// connection of any process can take the port first, and the node cannot
// bind it.
const (
	clusterPortMin = 12000
	clusterPortMax = 22767
)

// clusterPort picks a port from clusterPortMin to clusterPortMax that is free
// and whose bus port is free too. Another process may still take either
// before the node binds them: StartCluster then tries another.
func clusterPort(taken map[int]bool) (int, error) {
	var lc net.ListenConfig
	free := func(p int) bool {
		ln, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		_ = ln.Close()
		return true
	}
	for range 500 {
		p := clusterPortMin + mrand.IntN(clusterPortMax-clusterPortMin+1) //nolint:gosec // a port, not a secret.
		if taken[p] || taken[p+10000] || !free(p) || !free(p+10000) {
			continue
		}
		taken[p], taken[p+10000] = true, true
		return p, nil
	}
	return 0, fmt.Errorf("no free port from %d to %d with a free bus port", clusterPortMin, clusterPortMax)
}

// StartCluster starts a Redis Cluster of three primaries with one replica
// each under dir; see StartClusterReplicas.
func StartCluster(dir string, nodeTimeout time.Duration) (*Cluster, error) {
	return StartClusterReplicas(dir, nodeTimeout, 1)
}

// StartClusterReplicas starts 3 × (1 + replicas) cluster-enabled servers
// under dir and joins them with redis-cli --cluster create (three
// primaries, replicas each), then waits until every node says the cluster
// is ok and sees every replica as a replica. nodeTimeout is the cluster's
// cluster-node-timeout.
func StartClusterReplicas(dir string, nodeTimeout time.Duration, replicas int) (*Cluster, error) {
	if _, err := exec.LookPath("redis-cli"); err != nil {
		return nil, fmt.Errorf("redis-cli not found: %s", InstallHint)
	}
	c := &Cluster{replicas: replicas}
	taken := map[int]bool{}
	for i := range 3 * (1 + replicas) {
		nd := filepath.Join(dir, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(nd, 0o755); err != nil {
			c.Stop()
			return nil, err
		}
		var s *Server
		var err error
		// A port found free can be taken before the node binds it.
		for range 3 {
			var port int
			if port, err = clusterPort(taken); err != nil {
				break
			}
			s = &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, Dir: nd, args: []string{
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", strconv.Itoa(int(nodeTimeout.Milliseconds())),
				"--appendonly", "no",
				// The production setting for availability: while a shard
				// has no primary (between a primary's failure and its
				// replica's promotion), the other shards keep serving
				// their slots; with the default, yes, every node answers
				// CLUSTERDOWN for every key meanwhile.
				"--cluster-require-full-coverage", "no",
				// Redis waits 5 s by default before a diskless full sync, to
				// gather replicas; a replica that never synced refuses to
				// take over.
				"--repl-diskless-sync-delay", "0",
			}}
			if err = s.Start(); err == nil {
				break
			}
		}
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.CommandContext(context.Background(), "redis-cli", args...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	if err := c.WaitOK(30 * time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// WaitOK waits until every running node reports cluster_state:ok, every
// slot is served, every replica is in sync, and every node sees the same
// primaries (each with slots) and every other running node as what it is:
// for a moment after a join or a failover, a node can still show a replica
// as a primary without slots, and a test that read the topology then would
// act on a wrong one.
func (c *Cluster) WaitOK(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := c.check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ok within %v: %w", within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) check() error {
	ctx := context.Background()
	running := 0
	views := map[string]string{}
	for _, n := range c.Nodes {
		if n.cmd == nil {
			continue
		}
		running++
		rdb := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1, DisableIdentity: true})
		info, err := rdb.ClusterInfo(ctx).Result()
		if err == nil && (!strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384")) {
			err = fmt.Errorf("%s: %s", n.Addr, strings.Join(strings.Fields(info)[:3], " "))
		}
		if err == nil {
			err = replicaInSync(ctx, rdb)
		}
		var nodes string
		if err == nil {
			nodes, err = rdb.ClusterNodes(ctx).Result()
		}
		_ = rdb.Close()
		if err != nil {
			return err
		}
		views[n.Addr] = roles(nodes)
	}
	// Every node must agree on the roles, and see every running node as
	// either a primary with slots or a replica of one.
	var first string
	for addr, v := range views {
		if first == "" {
			first = v
		}
		if v != first {
			return fmt.Errorf("%s sees the roles as %s, another node as %s", addr, v, first)
		}
		if got := strings.Count(v, "\n"); got < running {
			return fmt.Errorf("%s knows the role of %d of %d running nodes: %s", addr, got, running, v)
		}
	}
	return nil
}

// roles sums up CLUSTER NODES as one line per live node: its address and
// "primary" when it serves slots, "replica of <id>" when it follows one;
// nodes marked as failing, and primaries without slots (a replica not yet
// known as one, or a failed primary), are left out.
func roles(nodes string) string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || strings.Contains(f[2], "fail") || strings.Contains(f[2], "handshake") || strings.Contains(f[2], "noaddr") {
			continue
		}
		addr := strings.SplitN(f[1], "@", 2)[0]
		switch {
		case strings.Contains(f[2], "master") && len(f) > 8:
			out = append(out, addr+" primary")
		case strings.Contains(f[2], "slave") && f[3] != "-":
			out = append(out, addr+" replica of "+f[3])
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n") + "\n"
}

// replicaInSync fails while rdb is a replica whose link to its primary is
// not up: a replica that has not synced cannot take over.
func replicaInSync(ctx context.Context, rdb *redis.Client) error {
	info, err := rdb.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if strings.Contains(info, "role:slave") && !strings.Contains(info, "master_link_status:up") {
		return fmt.Errorf("%s: replica not in sync yet", rdb.Options().Addr)
	}
	return nil
}

// Sentinel is a primary with two replicas, watched by three Sentinels with
// a quorum of two.
type Sentinel struct {
	Primary   *Server
	Replicas  []*Server
	Sentinels []*Server
}

// Topology returns the options that reach the primary through the
// Sentinels.
func (s *Sentinel) Topology() Topology {
	var addrs []string
	for _, n := range s.Sentinels {
		addrs = append(addrs, n.Addr)
	}
	nodes := []string{s.Primary.Addr}
	for _, r := range s.Replicas {
		nodes = append(nodes, r.Addr)
	}
	return Topology{Name: "sentinel", Nodes: nodes, opts: redis.UniversalOptions{Addrs: addrs, MasterName: SentinelMaster, DisableIdentity: true}}
}

// Stop kills every process.
func (s *Sentinel) Stop() {
	for _, n := range append(append([]*Server{s.Primary}, s.Replicas...), s.Sentinels...) {
		if n != nil {
			n.Kill()
		}
	}
}

// StartSentinel starts a primary, two replicas and three Sentinels under
// dir and waits until every Sentinel knows both replicas and both other
// Sentinels. downAfter is Sentinel's down-after-milliseconds.
func StartSentinel(dir string, downAfter time.Duration) (*Sentinel, error) {
	st := &Sentinel{}
	var err error
	if st.Primary, err = StartServer(mkdir(dir, "primary"), "--repl-diskless-sync-delay", "0"); err != nil {
		return nil, err
	}
	for i := range 2 {
		r, err := StartServer(mkdir(dir, fmt.Sprintf("replica%d", i)), "--replicaof", "127.0.0.1", strconv.Itoa(st.Primary.Port),
			"--repl-diskless-sync-delay", "0")
		if err != nil {
			st.Stop()
			return nil, err
		}
		st.Replicas = append(st.Replicas, r)
	}
	for i := range 3 {
		port, err := FreePort()
		if err != nil {
			st.Stop()
			return nil, err
		}
		d := mkdir(dir, fmt.Sprintf("sentinel%d", i))
		conf := filepath.Join(d, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile sentinel.log\ndaemonize no\nprotected-mode no\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\nsentinel down-after-milliseconds %s %d\n"+
			"sentinel failover-timeout %s 10000\nsentinel parallel-syncs %s 2\n",
			port, d, SentinelMaster, st.Primary.Port, SentinelMaster, downAfter.Milliseconds(), SentinelMaster, SentinelMaster)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			st.Stop()
			return nil, err
		}
		sn := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, Dir: d, conf: conf, sentinel: true}
		if err := sn.Start(); err != nil {
			st.Stop()
			return nil, err
		}
		st.Sentinels = append(st.Sentinels, sn)
	}
	if err := st.waitDiscovered(30 * time.Second); err != nil {
		st.Stop()
		return nil, err
	}
	return st, nil
}

func mkdir(dir, name string) string {
	d := filepath.Join(dir, name)
	_ = os.MkdirAll(d, 0o755)
	return d
}

func (s *Sentinel) waitDiscovered(within time.Duration) error {
	ctx := context.Background()
	deadline := time.Now().Add(within)
	for {
		var err error
		for _, sn := range s.Sentinels {
			sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, MaxRetries: -1, DisableIdentity: true})
			replicas, rerr := sc.Replicas(ctx, SentinelMaster).Result()
			others, serr := sc.Sentinels(ctx, SentinelMaster).Result()
			_ = sc.Close()
			switch {
			case rerr != nil:
				err = rerr
			case serr != nil:
				err = serr
			case len(replicas) < 2 || len(others) < 2:
				err = fmt.Errorf("sentinel %s knows %d replicas and %d other sentinels", sn.Addr, len(replicas), len(others))
			}
			if err != nil {
				break
			}
		}
		for _, r := range s.Replicas {
			if err != nil {
				break
			}
			rdb := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DisableIdentity: true})
			err = replicaInSync(ctx, rdb)
			_ = rdb.Close()
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sentinels not ready within %v: %w", within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fixture is a package-wide Redis setup, started on first use and stopped
// by Main when the package's tests end.
type fixture[T interface{ Stop() }] struct {
	name  string
	start func(dir string) (T, error)
	once  sync.Once
	v     T
	err   error
}

func (f *fixture[T]) get(t testing.TB) T {
	t.Helper()
	f.once.Do(func() {
		dir, err := os.MkdirTemp("", "redistest-"+f.name+"-")
		if err != nil {
			f.err = err
			return
		}
		atExit(func() { _ = os.RemoveAll(dir) })
		if f.v, f.err = f.start(dir); f.err == nil {
			atExit(f.v.Stop)
		}
	})
	if f.err != nil {
		t.Fatalf("redistest: start the package's %s: %v", f.name, f.err)
	}
	return f.v
}

var (
	cleanupMu sync.Mutex
	cleanups  []func()

	pkgCluster = &fixture[*Cluster]{name: "cluster", start: func(dir string) (*Cluster, error) {
		return StartCluster(dir, 2*time.Second)
	}}
	pkgSentinel = &fixture[*Sentinel]{name: "sentinel", start: func(dir string) (*Sentinel, error) {
		return StartSentinel(dir, time.Second)
	}}
)

// atExit runs f when Main ends, the last registered first.
func atExit(f func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanups = append(cleanups, f)
}

func runCleanups() {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanups = nil
}

// PackageCluster is the package's Redis Cluster, started once.
func PackageCluster(t testing.TB) *Cluster {
	t.Helper()
	return pkgCluster.get(t)
}

// PackageSentinel is the package's Sentinel setup, started once.
func PackageSentinel(t testing.TB) *Sentinel {
	t.Helper()
	return pkgSentinel.get(t)
}

// Topology returns the options that reach s alone.
func (s Server) Topology() Topology {
	return Topology{Name: "single", Nodes: []string{s.Addr}, opts: redis.UniversalOptions{Addrs: []string{s.Addr}, DisableIdentity: true}}
}

// Single is the package's single Redis as a Topology.
func Single(t testing.TB) Topology {
	t.Helper()
	return Topology{Name: "single", Nodes: []string{Addr(t)}, opts: redis.UniversalOptions{Addrs: []string{Addr(t)}, DisableIdentity: true}}
}

// Topologies are the three ways of running Redis that every route must
// work on. The Cluster and Sentinel fixtures start on first use (about 3 s
// each) and are shared by the package's tests.
func Topologies(t testing.TB) []Topology {
	t.Helper()
	return []Topology{Single(t), PackageCluster(t).Topology(), PackageSentinel(t).Topology()}
}

// ClientOf returns a client of topology tp and a key prefix no other test
// uses; the keys under it are deleted when the test ends.
func ClientOf(t testing.TB, tp Topology) (redis.UniversalClient, string) {
	t.Helper()
	rdb := redis.NewUniversalClient(tp.Options())
	prefix := Prefix(t)
	t.Cleanup(func() {
		DeletePrefix(t, rdb, prefix)
		_ = rdb.Close()
	})
	return rdb, prefix
}
