package observability_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dubebox/dubebox/internal/servicetest"
	"github.com/dubebox/dubebox/observability"
	"go.uber.org/zap/zapcore"
)

// TestLoggerBuffersAndFlushes checks the promise of the README: info lines
// are buffered, a warn line is written at once with what came before it,
// and the flush function writes the rest; lines are JSON with ts, level and
// msg, durations in milliseconds.
func TestLoggerBuffersAndFlushes(t *testing.T) {
	t.Parallel()
	var out servicetest.SyncBuffer
	log, flush := observability.NewLogger(&out, zapcore.InfoLevel, "json")
	log.Info("first")
	log.Debug("hidden")
	if got := out.String(); got != "" {
		t.Fatalf("an info line was written at once: %q", got)
	}
	log.Warn("boom")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("after a warn line want 2 lines written, got %q", out.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ts", "level", "msg", "caller"} {
		if _, ok := first[k]; !ok {
			t.Errorf("no %s in %s", k, lines[0])
		}
	}
	log.Info("last")
	flush()
	if !strings.Contains(out.String(), `"msg":"last"`) || strings.Contains(out.String(), "hidden") {
		t.Errorf("after flush: %q", out.String())
	}
}

// TestConsoleWithoutColourInAFile: make run's console lines written to a
// file (or a pipe) carry no escape codes; on a terminal they are coloured.
func TestConsoleWithoutColourInAFile(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "run.log"))
	if err != nil {
		t.Fatal(err)
	}
	log, flush := observability.NewLogger(f, zapcore.InfoLevel, "console")
	log.Warn("hello")
	flush()
	_ = f.Close()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("\x1b[")) || !bytes.Contains(b, []byte("WARN")) {
		t.Errorf("a console line in a file: %q, want WARN without escape codes", b)
	}
}
