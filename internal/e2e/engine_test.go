//go:build compose

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// engine is the Docker engine the Compose test talks to: the user's own
// when one answers (Docker Desktop, a running dockerd), else a private
// dockerd that the test starts and stops, leaving the host as it found it.
type engine struct {
	// env is the environment of every docker and docker-compose command.
	env []string
	// private says the test started the engine itself.
	private bool
}

// docker runs the docker CLI against the engine and returns its output.
func (e *engine) docker(ctx context.Context, args ...string) (string, error) {
	return e.run(ctx, "docker", args...)
}

func (e *engine) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = e.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(string(out), 3000))
	}
	return string(out), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// startEngine finds or starts an engine. A private one gets its own data
// root, exec root and socket under a temporary folder; when the test ends
// it is stopped, its folder removed, and the host's iptables rules,
// network links and IP forwarding put back as they were (Docker changes all
// three). The test fails, saying why, when no engine can be had.
func startEngine(t *testing.T) *engine {
	t.Helper()
	for _, tool := range []string{"docker", "docker-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install Debian's docker.io and docker-compose (apt-get install -y docker.io docker-compose), as .ci/run does", tool)
		}
	}
	e := &engine{env: os.Environ()}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := e.docker(ctx, "version", "--format", "{{.Server.Version}}"); err == nil {
		t.Logf("compose: using the Docker engine that answers at %s", orDefault(os.Getenv("DOCKER_HOST"), "the default socket"))
		return e
	}
	if os.Geteuid() != 0 {
		t.Fatal("no Docker engine answers, and starting a private dockerd needs root: run as root, or start Docker first")
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		t.Fatal("no Docker engine answers and dockerd is not installed: apt-get install -y docker.io (as .ci/run does)")
	}
	before, err := snapshotHost()
	if err != nil {
		t.Fatalf("reading the host's network state: %v", err)
	}
	dir, err := os.MkdirTemp("", "dubebox-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "docker.sock")
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(context.Background(), dockerd,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"--host", "unix://"+sock,
		"--storage-driver", "overlay2",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that its containerd goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	e.private = true
	e.env = append(os.Environ(), "DOCKER_HOST=unix://"+sock)
	t.Cleanup(func() {
		stopDockerd(t, cmd, exited)
		_ = logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			t.Logf("--- tail of dockerd's log:\n%s", tail(string(b), 3000))
		}
		unmountUnder(dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing dockerd's folder: %v", err)
		}
		if err := restoreHost(before); err != nil {
			t.Errorf("restoring the host's network state: %v", err)
		}
		after, err := snapshotHost()
		if err != nil {
			t.Errorf("reading the host's network state: %v", err)
			return
		}
		if diff := before.diff(after); diff != "" {
			t.Errorf("the host is not as it was: %s", diff)
		} else {
			t.Logf("compose: private dockerd stopped; iptables, links and ip_forward as before")
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := e.docker(ctx, "version", "--format", "{{.Server.Version}}")
		cancel()
		if err == nil {
			break
		}
		select {
		case werr := <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			t.Fatalf("dockerd exited at start (%v): %s", werr, tail(string(b), 2000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within 60s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("compose: started a private dockerd at %s", sock)
	return e
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func stopDockerd(t *testing.T, cmd *exec.Cmd, exited <-chan error) {
	t.Helper()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		t.Logf("compose: dockerd stopped (%v)", err)
	case <-time.After(30 * time.Second):
		t.Errorf("dockerd did not stop within 30s of SIGTERM; killing it")
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err := <-exited
		t.Logf("compose: dockerd killed (%v)", err)
	}
	// Whatever of its group is left (containerd, shims) goes too.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// unmountUnder detaches every mount below dir (overlay layers, netns files
// a crashed dockerd left), deepest first.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// hostState is what Docker changes on the host's network.
type hostState struct {
	iptables  map[string]string // by command (iptables, ip6tables): the rules, without comments
	links     []string
	ipForward string
}

var ruleDumpers = []string{"iptables", "ip6tables"}

func snapshotHost() (hostState, error) {
	s := hostState{iptables: map[string]string{}}
	for _, cmd := range ruleDumpers {
		if _, err := exec.LookPath(cmd + "-save"); err != nil {
			continue
		}
		out, err := exec.Command(cmd + "-save").Output() //nolint:noctx // a local tool that ends by itself.
		if err != nil {
			return s, fmt.Errorf("%s-save: %w", cmd, err)
		}
		s.iptables[cmd] = dropEmptyTables(stripComments(string(out)))
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return s, err
	}
	for _, i := range ifs {
		s.links = append(s.links, i.Name)
	}
	sort.Strings(s.links)
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		return s, err
	}
	s.ipForward = strings.TrimSpace(string(b))
	return s, nil
}

// stripComments drops a rules dump's comments and the packet counters on
// its chain lines, which change with traffic.
func stripComments(dump string) string {
	var keep []string
	for _, l := range strings.Split(dump, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			keep = append(keep, counters.ReplaceAllString(l, ""))
		}
	}
	return strings.Join(keep, "\n") + "\n"
}

// dropEmptyTables leaves out the tables that have no rules, no chains of
// their own and only ACCEPT policies: they filter nothing, as a table that
// is not loaded at all.
func dropEmptyTables(dump string) string {
	var out, table []string
	empty := true
	for _, l := range strings.Split(strings.TrimSpace(dump), "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			table, empty = []string{l}, true
		case l == "COMMIT":
			if !empty {
				out = append(out, append(table, l)...)
			}
			table = nil
		default:
			table = append(table, l)
			if f := strings.Fields(l); !strings.HasPrefix(l, ":") || len(f) < 2 || f[1] != "ACCEPT" {
				empty = false
			}
		}
	}
	return strings.Join(out, "\n") + "\n"
}

var counters = regexp.MustCompile(` \[\d+:\d+\]$`)

// tablesOf lists the tables a rules dump names.
func tablesOf(dump string) []string {
	var tables []string
	for _, l := range strings.Split(dump, "\n") {
		if name, ok := strings.CutPrefix(l, "*"); ok {
			tables = append(tables, name)
		}
	}
	return tables
}

// builtinChains lists the chains of table in a rules dump that have a
// policy (the built-in ones).
func builtinChains(dump, table string) []string {
	var chains []string
	in := false
	for _, l := range strings.Split(dump, "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			in = l == "*"+table
		case in && strings.HasPrefix(l, ":"):
			f := strings.Fields(strings.TrimPrefix(l, ":"))
			if len(f) >= 2 && f[1] != "-" {
				chains = append(chains, f[0])
			}
		}
	}
	return chains
}

// restoreHost puts back the rules, removes the links Docker made and sets
// IP forwarding as it was.
func restoreHost(before hostState) error {
	var errs []error
	now, err := snapshotHost()
	if err != nil {
		return err
	}
	for cmd, rules := range before.iptables {
		family := map[string]string{"iptables": "ip", "ip6tables": "ip6"}[cmd]
		for _, table := range tablesOf(now.iptables[cmd]) {
			if slices.Contains(tablesOf(rules), table) {
				continue
			}
			// A table Docker loaded that was not there before: with the
			// nf_tables backend it is deleted outright; otherwise it is
			// left empty with every policy ACCEPT, which filters nothing.
			if nft, err := exec.LookPath("nft"); err == nil && family != "" {
				if exec.Command(nft, "delete", "table", family, table).Run() == nil { //nolint:noctx,gosec // a local tool.
					continue
				}
			}
			_ = exec.Command(cmd, "-t", table, "-F").Run() //nolint:noctx,gosec // a local tool.
			_ = exec.Command(cmd, "-t", table, "-X").Run() //nolint:noctx,gosec // a local tool.
			for _, chain := range builtinChains(now.iptables[cmd], table) {
				_ = exec.Command(cmd, "-t", table, "-P", chain, "ACCEPT").Run() //nolint:noctx,gosec // a local tool.
			}
		}
		if strings.TrimSpace(rules) == "" {
			continue
		}
		// The tables that were there are replaced whole by the saved rules
		// (policies included).
		restore := exec.Command(cmd + "-restore") //nolint:noctx,gosec // a local tool.
		restore.Stdin = strings.NewReader(rules)
		if out, err := restore.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s-restore: %w: %s", cmd, err, out))
		}
	}
	for _, link := range now.links {
		if !slices.Contains(before.links, link) {
			if out, err := exec.Command("ip", "link", "delete", link).CombinedOutput(); err != nil { //nolint:noctx // a local tool.
				// A veth goes with its peer; only a link still there counts.
				if _, statErr := net.InterfaceByName(link); statErr == nil {
					errs = append(errs, fmt.Errorf("ip link delete %s: %w: %s", link, err, out))
				}
			}
		}
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(before.ipForward+"\n"), 0o644); err != nil { //nolint:gosec // a procfs setting.
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s hostState) diff(o hostState) string {
	var d []string
	for cmd, rules := range s.iptables {
		if o.iptables[cmd] != rules {
			d = append(d, cmd+" rules differ")
		}
	}
	if !slices.Equal(s.links, o.links) {
		d = append(d, fmt.Sprintf("links %v, were %v", o.links, s.links))
	}
	if s.ipForward != o.ipForward {
		d = append(d, "ip_forward "+o.ipForward+", was "+s.ipForward)
	}
	return strings.Join(d, "; ")
}
