// Package servicetest holds what the end-to-end, fault and benchmark suites
// share: finding the repository, building its binaries, requiring a tool,
// and waiting for a server to answer.
package servicetest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Root is the repository's top folder.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Build compiles the repository's commands (such as "./cmd/dubebox") into
// dir, statically and without paths, as the image does.
func Build(dir string, pkgs ...string) error {
	args := append([]string{"build", "-trimpath", "-o", dir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(context.Background(), "go", args...) //nolint:gosec // the packages are the tests' own.
	cmd.Dir = Root()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %v: %w\n%s", pkgs, err, out)
	}
	return nil
}

// Need returns the path of a tool the test cannot run without, or fails
// the test with how to install it.
func Need(t testing.TB, bin, hint string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("%s not found: %s", bin, hint)
	}
	return p
}

// WaitHTTP polls url until it answers 200, for at most within.
func WaitHTTP(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 within %v: %w", url, within, err)
		}
		time.Sleep(30 * time.Millisecond)
	}
}
