//go:build compose

package e2e

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dubebox/dubebox/internal/servicetest"
	"github.com/goccy/go-yaml"
)

// No registry can be reached where this test runs, so it builds, under the
// exact names the Dockerfile and docker-compose.yml use, stand-in images
// that run the real program of that name from Debian's packages (bookworm)
// or from this machine's Go toolchain. Jaeger is the exception: Debian has
// no package, and building it takes many minutes, so its stand-in is
// standin/jaeger, which receives OTLP and answers Jaeger's query API for the
// trace ids it got. Grafana cannot run here at all; its files are validated
// instead. The stand-ins are the test's, never the README's: with real
// images from the registries, the same files run unchanged.

// debianPackages are the programs the stand-ins run, installed with
// debootstrap into one root file system that every Debian-based stand-in
// shares as its base.
var debianPackages = []string{"redis-server", "redis-tools", "prometheus", "prometheus-redis-exporter", "haproxy", "ca-certificates", "tzdata"}

const debianSuite = "bookworm"

// images are the names the files use, found by reading them.
type images struct {
	golang, runtime string // the Dockerfile's build and run stages
	services        map[string]string
}

func readImages(t *testing.T, top string) images {
	t.Helper()
	df, err := os.ReadFile(filepath.Join(top, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(string(df), -1)
	if len(froms) < 2 {
		t.Fatalf("the Dockerfile has %d FROM lines; this test knows a build stage and run stages", len(froms))
	}
	imgs := images{golang: froms[0][1], runtime: froms[len(froms)-1][1], services: map[string]string{}}
	for _, f := range froms[1:] {
		if f[1] != imgs.runtime {
			t.Fatalf("the Dockerfile's run stages use %s and %s; this test makes one run-stage base", f[1], imgs.runtime)
		}
	}
	for _, file := range []string{"docker-compose.yml", "docker-compose.cluster.yml"} {
		raw, err := os.ReadFile(filepath.Join(top, file))
		if err != nil {
			t.Fatal(err)
		}
		var cf struct {
			Services map[string]struct {
				Image string         `yaml:"image"`
				Build map[string]any `yaml:"build"`
			} `yaml:"services"`
		}
		if err := yaml.Unmarshal(raw, &cf); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for name, s := range cf.Services {
			if s.Build == nil {
				imgs.services[file+"/"+name] = s.Image
			}
		}
	}
	return imgs
}

// cacheDir keeps what is slow to make (the Debian root file system, the
// module cache the build needs) between runs, each under a name made from
// what it was made of.
func cacheDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("DUBEBOX_CACHE")
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		dir = filepath.Join(base, "dubebox")
	}
	dir = filepath.Join(dir, "compose-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func contentKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		_, _ = io.WriteString(h, p+"\x00")
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// debianMirror is the mirror apt uses on this machine.
func debianMirror() string {
	if m := os.Getenv("DEBIAN_MIRROR"); m != "" {
		return m
	}
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			switch {
			case len(fields) >= 2 && fields[0] == "URIs:" && !strings.Contains(fields[1], "security"):
				return fields[1]
			case len(fields) >= 3 && fields[0] == "deb" && !strings.Contains(fields[1], "security"):
				return fields[1]
			}
		}
	}
	return "http://deb.debian.org/debian"
}

// debianRootfs returns a tar of a minimal Debian with debianPackages,
// made with debootstrap once and then kept in the cache.
func debianRootfs(t *testing.T, cache string) (path, key string) {
	t.Helper()
	mirror := debianMirror()
	key = contentKey(append([]string{debianSuite, mirror}, debianPackages...)...)
	path = filepath.Join(cache, "debian-"+key+".tar")
	if _, err := os.Stat(path); err == nil {
		return path, key
	}
	debootstrap := servicetest.Need(t, "debootstrap", "apt-get install -y debootstrap (as .ci/run does)")
	if os.Geteuid() != 0 {
		t.Fatal("debootstrap needs root to build the stand-ins' Debian base: run as root once, and the cache keeps it")
	}
	root, err := os.MkdirTemp(cache, "rootfs-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(root) }()
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, debootstrap, "--variant=minbase", "--include="+strings.Join(debianPackages, ","), debianSuite, root, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debootstrap: %v\n%s", err, tail(string(out), 3000))
	}
	// What apt downloaded is not needed in an image.
	for _, d := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		entries, _ := os.ReadDir(filepath.Join(root, d))
		for _, e := range entries {
			_ = os.RemoveAll(filepath.Join(root, d, e.Name()))
		}
	}
	tmp := path + ".tmp"
	tarCmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "-C", root, "-cf", tmp, ".")
	if out, err := tarCmd.CombinedOutput(); err != nil {
		t.Fatalf("tar of the Debian base: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	t.Logf("compose: Debian base made with debootstrap in %v (cached as %s)", time.Since(start).Round(time.Second), filepath.Base(path))
	return path, key
}

// moduleCache returns a module cache holding the modules go.mod requires,
// downloaded once per go.sum.
func moduleCache(t *testing.T, cache, top string) string {
	t.Helper()
	sum, err := os.ReadFile(filepath.Join(top, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "gomod-"+contentKey(runtime.Version(), string(sum)))
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir
	}
	cmd := exec.CommandContext(t.Context(), "go", "mod", "download")
	cmd.Dir = top
	cmd.Env = append(os.Environ(), "GOMODCACHE="+dir, "GOFLAGS=-modcacherw")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod download: %v\n%s", err, tail(string(out), 2000))
	}
	if err := os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tarEntry is one file or tree to put in an image made with docker import.
type tarEntry struct {
	dst  string // path in the image, without a leading slash
	src  string // a file or folder on this machine; empty with body
	body string // the file's content, when src is empty
	mode int64
	uid  int
}

// importImage makes an image named name from entries with docker import,
// with Dockerfile instructions in changes (USER, ENTRYPOINT and the like).
func importImage(t *testing.T, e *engine, name string, entries []tarEntry, changes ...string) {
	t.Helper()
	pr, pw := io.Pipe()
	go func() { _ = pw.CloseWithError(writeTar(pw, entries)) }()
	args := []string{"import"}
	for _, c := range changes {
		args = append(args, "--change", c)
	}
	args = append(args, "-", name)
	cmd := exec.CommandContext(t.Context(), "docker", args...)
	cmd.Env = e.env
	cmd.Stdin = pr
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import %s: %v\n%s", name, err, out)
	}
}

func writeTar(w io.Writer, entries []tarEntry) error {
	tw := tar.NewWriter(w)
	for _, en := range entries {
		if en.src == "" {
			mode := en.mode
			if mode == 0 {
				mode = 0o644
			}
			typ := byte(tar.TypeReg)
			if strings.HasSuffix(en.dst, "/") {
				typ = tar.TypeDir
			}
			hdr := &tar.Header{Name: en.dst, Mode: mode, Size: int64(len(en.body)), Uid: en.uid, Gid: en.uid, Typeflag: typ, ModTime: time.Unix(0, 0)}
			if typ == tar.TypeDir {
				hdr.Size = 0
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := io.WriteString(tw, en.body); err != nil {
				return err
			}
			continue
		}
		err := filepath.WalkDir(en.src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(en.src, p)
			name := filepath.ToSlash(filepath.Join(en.dst, rel))
			link := ""
			if info.Mode()&fs.ModeSymlink != 0 {
				if link, err = os.Readlink(p); err != nil {
					return err
				}
			}
			hdr, err := tar.FileInfoHeader(info, link)
			if err != nil {
				return err
			}
			hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = name, 0, 0, "", ""
			if d.IsDir() {
				hdr.Name += "/"
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if info.Mode().IsRegular() {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				_, err = io.Copy(tw, f)
				_ = f.Close()
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// buildImage builds name from a Dockerfile with no context.
func buildImage(t *testing.T, e *engine, name, dockerfile string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "docker", "build", "-q", "-t", name, "-")
	cmd.Env = e.env
	cmd.Stdin = strings.NewReader(dockerfile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build %s: %v\n%s\n%s", name, err, dockerfile, out)
	}
}

func imageExists(t *testing.T, e *engine, name string) bool {
	t.Helper()
	_, err := e.docker(t.Context(), "image", "inspect", "--format", "{{.Id}}", name)
	return err == nil
}

// buildStandins makes every image the files name, but Grafana's.
func buildStandins(t *testing.T, e *engine, top string, imgs images) {
	t.Helper()
	start := time.Now()
	cache := cacheDir(t)
	rootfs, key := debianRootfs(t, cache)
	base := "dubebox-standin/debian:" + key
	if !imageExists(t, e, base) {
		if _, err := e.docker(t.Context(), "import", rootfs, base); err != nil {
			t.Fatal(err)
		}
	}

	// The Go build image: the Debian base with this machine's toolchain
	// and the modules the build needs, offline.
	goroot, err := exec.CommandContext(t.Context(), "go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	goFiles := "dubebox-standin/go-files:" + contentKey(runtime.Version(), imgs.golang)
	mods := moduleCache(t, cache, top)
	importImage(t, e, goFiles, []tarEntry{
		{dst: "usr/local/go", src: strings.TrimSpace(string(goroot))},
		{dst: "go/pkg/mod/cache/download", src: filepath.Join(mods, "cache", "download")},
	})
	buildImage(t, e, imgs.golang, "FROM "+base+"\n"+
		"COPY --from="+goFiles+" /usr/local/go /usr/local/go\n"+
		"COPY --from="+goFiles+" /go /go\n"+
		"ENV GOPATH=/go PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin GOTOOLCHAIN=local GOPROXY=off\n"+
		"WORKDIR /go\n")

	// The run stage's base: distroless static's user, certificates and
	// time zones, and nothing else (no shell).
	importImage(t, e, imgs.runtime, []tarEntry{
		{dst: "etc/passwd", body: "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"},
		{dst: "etc/group", body: "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"},
		{dst: "etc/ssl/certs/ca-certificates.crt", src: "/etc/ssl/certs/ca-certificates.crt"},
		{dst: "usr/share/zoneinfo", src: "/usr/share/zoneinfo"},
		{dst: "tmp/", mode: 0o1777},
		{dst: "home/nonroot/", mode: 0o700, uid: 65532},
	}, "USER 65532", "WORKDIR /home/nonroot")

	built := map[string]bool{}
	for service, image := range imgs.services {
		if built[image] {
			continue
		}
		built[image] = true
		repo, _, _ := strings.Cut(image, ":")
		switch repo {
		case "redis":
			// As the real image: /data belongs to the redis user.
			buildImage(t, e, image, "FROM "+base+"\nRUN mkdir -p /data && chown redis:redis /data\nVOLUME /data\nWORKDIR /data\nEXPOSE 6379\nCMD [\"redis-server\"]\n")
		case "oliver006/redis_exporter":
			buildImage(t, e, image, "FROM "+base+"\nUSER nobody\nEXPOSE 9121\nENTRYPOINT [\"/usr/bin/prometheus-redis-exporter\"]\n")
		case "prom/prometheus":
			buildImage(t, e, image, "FROM "+base+"\n"+
				"RUN mkdir -p /prometheus /etc/prometheus && chown nobody:nogroup /prometheus\n"+
				"USER nobody\nWORKDIR /prometheus\nVOLUME /prometheus\nEXPOSE 9090\n"+
				"ENTRYPOINT [\"/usr/bin/prometheus\"]\n"+
				"CMD [\"--config.file=/etc/prometheus/prometheus.yml\", \"--storage.tsdb.path=/prometheus\"]\n")
		case "jaegertracing/jaeger":
			dir := t.TempDir()
			if err := servicetest.Build(dir, "./internal/e2e/standin/jaeger"); err != nil {
				t.Fatal(err)
			}
			importImage(t, e, image, []tarEntry{{dst: "jaeger", src: filepath.Join(dir, "jaeger"), mode: 0o755}},
				`ENTRYPOINT ["/jaeger"]`, "EXPOSE 4318 16686")
		case "haproxy":
			buildImage(t, e, image, "FROM "+base+"\nRUN mkdir -p /usr/local/etc/haproxy\nEXPOSE 5000\nCMD [\"haproxy\", \"-f\", \"/usr/local/etc/haproxy/haproxy.cfg\"]\n")
		case "grafana/grafana":
			// Not run: see TestCompose.
		default:
			t.Fatalf("service %s uses %s, which has no stand-in: add one to buildStandins", service, image)
		}
	}
	t.Logf("compose: stand-in images ready in %v", time.Since(start).Round(time.Second))
}
