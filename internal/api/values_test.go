package api_test

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/dubebox/dubebox/internal/api"
	"github.com/dubebox/dubebox/internal/redistest"
)

// withMaxValue sets MAX_VALUE_BYTES.
func withMaxValue(n int) option {
	return func(c *api.Config, _ *api.Deps) { c.MaxValueBytes = n }
}

// everyByte is the bytes 0 to 255, in order.
func everyByte() string {
	var b strings.Builder
	for i := range 256 {
		b.WriteByte(byte(i))
	}
	return b.String()
}

// picture is a small PNG, made here.
func picture(t testing.TB) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 7, 3))
	for x := range 7 {
		for y := range 3 {
			img.Set(x, y, color.RGBA{uint8(x * 36), uint8(y * 80), 200, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBinaryValues: a PUT of bytes keeps them byte for byte, with their
// type when they have one, and a read gives them back as that type, with
// the TTL, the ETag and 304, on every topology.
func TestBinaryValues(t *testing.T) {
	//nolint:thelper // a test body, run once per topology.
	onEveryTopology(t, func(t *testing.T, _ redistest.Topology, e *env) {
		all := everyByte()
		w := e.do(t, "PUT", "/v1/kv/bytes", all, "Content-Type", "application/octet-stream", "X-TTL-Seconds", "60")
		if w.Code != http.StatusOK || w.Body.String() != `{"key":"bytes","ttl_seconds":60}` {
			t.Fatalf("PUT bytes: %d %s", w.Code, w.Body.String())
		}
		tag := w.Header().Get("ETag")
		if got, _ := e.rdb.Get(t.Context(), e.prefix+"bytes").Result(); got != all {
			t.Fatalf("Redis holds %q, want the 256 bytes as they are", got)
		}
		w = e.do(t, "GET", "/v1/kv/bytes", "", "Accept", "application/octet-stream")
		if w.Code != http.StatusOK || w.Body.String() != all || w.Header().Get("ETag") != tag || w.Header().Get("X-TTL-Seconds") != "60" ||
			w.Header().Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("GET bytes: %d %v %q", w.Code, w.Header(), w.Body.String())
		}
		if w := e.do(t, "GET", "/v1/kv/bytes", ""); w.Code != http.StatusNotAcceptable || errorCode(t, w) != api.CodeNotAcceptable {
			t.Errorf("JSON read of bytes: %d %s", w.Code, w.Body.String())
		}

		pic := string(picture(t))
		w = e.do(t, "PUT", "/v1/kv/pic", pic, "Content-Type", "image/png")
		if w.Code != http.StatusOK || w.Body.String() != `{"key":"pic","ttl_seconds":-1}` {
			t.Fatalf("PUT image/png: %d %s", w.Code, w.Body.String())
		}
		tag = w.Header().Get("ETag")
		for _, accept := range []string{"image/png", "image/*", "*/*", "", "text/html,application/xhtml+xml,image/avif,image/webp,*/*;q=0.8"} {
			w := e.do(t, "GET", "/v1/kv/pic", "", "Accept", accept)
			if w.Code != http.StatusOK || w.Body.String() != pic || w.Header().Get("Content-Type") != "image/png" ||
				w.Header().Get("Content-Length") != strconv.Itoa(len(pic)) || w.Header().Get("ETag") != tag || w.Header().Get("X-TTL-Seconds") != "-1" {
				t.Errorf("GET the picture with Accept %q: %d %v", accept, w.Code, w.Header())
			}
		}
		if w := e.do(t, "GET", "/v1/kv/pic", "", "Accept", "application/octet-stream"); w.Body.String() != pic || w.Header().Get("Content-Type") != "application/octet-stream" {
			t.Errorf("GET the picture as octet-stream: %d %v", w.Code, w.Header())
		}
		if w := e.do(t, "GET", "/v1/kv/pic", "", "Accept", "application/json"); w.Code != http.StatusNotAcceptable {
			t.Errorf("GET the picture as JSON: %d %s", w.Code, w.Body.String())
		}
		if w := e.do(t, "GET", "/v1/kv/pic", "", "Accept", "image/png", "If-None-Match", tag); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
			t.Errorf("If-None-Match on the picture: %d", w.Code)
		}
		if w := e.do(t, "HEAD", "/v1/kv/pic", "", "Accept", "image/png"); w.Code != http.StatusOK || w.Header().Get("Content-Length") != strconv.Itoa(len(pic)) {
			t.Errorf("HEAD the picture: %d %v", w.Code, w.Header())
		}

		// A type is kept as a type: text comes back as text, and as JSON
		// to a client that asks for JSON.
		e.do(t, "PUT", "/v1/kv/note", "héllo", "Content-Type", "text/plain; charset=utf-8")
		if w := e.do(t, "GET", "/v1/kv/note", "", "Accept", "application/json"); w.Body.String() != `{"key":"note","value":"héllo","ttl_seconds":-1}` {
			t.Errorf("JSON read of a text value: %s", w.Body.String())
		}
		if w := e.do(t, "GET", "/v1/kv/note", ""); w.Body.String() != "héllo" || w.Header().Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("read of a text value: %v %q", w.Header(), w.Body.String())
		}
		// A JSON write replaces the type with none.
		e.do(t, "PUT", "/v1/kv/note", `{"value":"plain"}`, "Content-Type", "application/json")
		if w := e.do(t, "GET", "/v1/kv/note", ""); w.Body.String() != `{"key":"note","value":"plain","ttl_seconds":-1}` {
			t.Errorf("after a JSON write: %s", w.Body.String())
		}

		// Bytes that look like a typed value's own header are stored so
		// that they read back as they were sent.
		lookalike := "\x1edubebox/type\x1fimage/png\nnot a picture"
		for _, ct := range []string{"application/octet-stream", "application/json"} {
			body := lookalike
			if ct == "application/json" {
				b, _ := json.Marshal(map[string]string{"value": lookalike})
				body = string(b)
			}
			e.do(t, "PUT", "/v1/kv/lookalike", body, "Content-Type", ct)
			if w := e.do(t, "GET", "/v1/kv/lookalike", "", "Accept", "application/octet-stream"); w.Body.String() != lookalike || w.Header().Get("Content-Type") != "application/octet-stream" {
				t.Errorf("%s lookalike: %v %q", ct, w.Header(), w.Body.String())
			}
		}

		// Conditional writes of bytes compare the tag the reads give.
		if w := e.do(t, "PUT", "/v1/kv/pic", "other", "Content-Type", "image/png", "If-Match", `"0000"`); w.Code != http.StatusPreconditionFailed {
			t.Errorf("PUT bytes with a stale If-Match: %d", w.Code)
		}
		if w := e.do(t, "PUT", "/v1/kv/pic", pic, "Content-Type", "image/webp", "If-Match", tag); w.Code != http.StatusOK || w.Header().Get("ETag") == tag {
			t.Errorf("PUT bytes with If-Match: %d, ETag %s (the type is part of the tag)", w.Code, w.Header().Get("ETag"))
		}
		if w := e.do(t, "GET", "/v1/kv/pic", ""); w.Header().Get("Content-Type") != "image/webp" {
			t.Errorf("after a PUT as image/webp: %v", w.Header())
		}

		// The batch read answers as the key's own GET would.
		w = e.do(t, "POST", "/v1/kv:batchGet", `{"keys":["note","bytes"]}`)
		if !strings.Contains(w.Body.String(), `{"key":"note","value":"plain","ttl_seconds":-1}`) || !strings.Contains(w.Body.String(), `"key":"bytes","error":{"code":"not_acceptable"`) {
			t.Errorf("batchGet: %s", w.Body.String())
		}

		for _, tc := range []struct {
			name    string
			headers []string
			code    int
		}{
			{"TTL not a number", []string{"Content-Type", "image/png", "X-TTL-Seconds", "soon"}, http.StatusBadRequest},
			{"TTL zero", []string{"Content-Type", "image/png", "X-TTL-Seconds", "0"}, http.StatusBadRequest},
			{"TTL header on JSON", []string{"Content-Type", "application/json", "X-TTL-Seconds", "5"}, http.StatusBadRequest},
			{"Content-Type not a type", []string{"Content-Type", "image/"}, http.StatusBadRequest},
			{"Content-Type too long", []string{"Content-Type", "image/" + strings.Repeat("x", 300)}, http.StatusBadRequest},
		} {
			if w := e.do(t, "PUT", "/v1/kv/refused", `{"value":"v"}`, tc.headers...); w.Code != tc.code {
				t.Errorf("%s: %d %s", tc.name, w.Code, w.Body.String())
			}
		}
		if n, _ := e.rdb.Exists(t.Context(), e.prefix+"refused").Result(); n != 0 {
			t.Error("a refused PUT wrote")
		}
	})
}

// TestLargeBinaryValue: a value of MAX_VALUE_BYTES (1 MiB here) goes in
// and comes back whole; one byte more is 413 and writes nothing.
func TestLargeBinaryValue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "", withMaxValue(1<<20))
	big := bytes.Repeat([]byte{0xff, 0x00, 0x7f, 0x80}, 1<<18)
	if w := e.do(t, "PUT", "/v1/kv/big", string(big), "Content-Type", "application/octet-stream"); w.Code != http.StatusOK {
		t.Fatalf("PUT 1 MiB: %d %s", w.Code, w.Body.String())
	}
	w := e.do(t, "GET", "/v1/kv/big", "", "Accept", "application/octet-stream")
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), big) || w.Header().Get("Content-Length") != "1048576" {
		t.Fatalf("GET 1 MiB: %d, %d bytes, equal %v", w.Code, w.Body.Len(), bytes.Equal(w.Body.Bytes(), big))
	}
	if w := e.do(t, "PUT", "/v1/kv/bigger", string(big)+"x", "Content-Type", "application/octet-stream"); w.Code != http.StatusRequestEntityTooLarge || errorCode(t, w) != api.CodePayloadTooLarge {
		t.Errorf("PUT 1 MiB + 1: %d %s", w.Code, w.Body.String())
	}
	if n, _ := e.rdb.Exists(t.Context(), e.prefix+"bigger").Result(); n != 0 {
		t.Error("the refused value was written")
	}
}

// TestBinaryValuesInTheNearCache: the near cache keeps a value's type with
// its bytes, and a write of bytes is seen at once.
func TestBinaryValuesInTheNearCache(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	e := newNearEnv(t, srv.Addr)
	pic := string(picture(t))
	e.do(t, "PUT", "/v1/kv/pic", pic, "Content-Type", "image/png")
	deadline := time.Now().Add(5 * time.Second)
	for e.do(t, "GET", "/v1/kv/pic", "").Header().Get("X-Cache") != "near" {
		if time.Now().After(deadline) {
			t.Fatal("GET never answered X-Cache: near")
		}
		time.Sleep(5 * time.Millisecond)
	}
	w := e.do(t, "GET", "/v1/kv/pic", "")
	if w.Body.String() != pic || w.Header().Get("Content-Type") != "image/png" {
		t.Fatalf("from the near cache: %v", w.Header())
	}
	e.do(t, "PUT", "/v1/kv/pic", "\x00\x01", "Content-Type", "image/gif")
	if w := e.do(t, "GET", "/v1/kv/pic", ""); w.Body.String() != "\x00\x01" || w.Header().Get("Content-Type") != "image/gif" {
		t.Fatalf("after a write: %v %q", w.Header(), w.Body.String())
	}
}

// TestPictureInChromium: the README's curl lines store a PNG and fetch it
// back unchanged, and Chromium shows it, in an <img> and opened alone.
func TestPictureInChromium(t *testing.T) {
	t.Parallel()
	browser := needChromium(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl not found: install Debian's curl")
	}
	e := newEnv(t, "", withMaxValue(1<<20))
	srv := e.url(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "picture.png"), filepath.Join(dir, "out.png")
	pic := picture(t)
	if err := os.WriteFile(in, pic, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--data-binary", "@" + in, "-H", "Content-Type: image/png", "-X", "PUT", srv + "/v1/kv/pic"},
		{srv + "/v1/kv/pic", "-H", "Accept: image/png", "-o", out},
	} {
		if b, err := exec.CommandContext(t.Context(), "curl", append([]string{"-sSf"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("curl %v: %v %s", args, err, b)
		}
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, pic) {
		t.Fatalf("out.png differs from picture.png (%d bytes, %v)", len(got), err)
	}
	ctx := headlessChromium(t, browser)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv+"/v1/kv/pic")); err != nil {
		t.Fatalf("open the picture in Chromium: %v", err)
	}
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.contentType + ' ' + (document.images[0] ? document.images[0].naturalWidth + 'x' + document.images[0].naturalHeight : 'no image')`))
	if err != nil || shown != "image/png 7x3" {
		t.Errorf("the picture opened alone: %q %v", shown, err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(srv+"/")); err != nil {
		t.Fatal(err)
	}
	shown, err = chromedp.Run(ctx, chromedp.Evaluate[string](`new Promise((resolve) => {
  const img = new Image();
  img.onload = () => resolve(img.naturalWidth + 'x' + img.naturalHeight);
  img.onerror = () => resolve('error');
  img.src = '`+srv+`/v1/kv/pic';
})`, chromedp.EvalAwaitPromise))
	if err != nil || shown != "7x3" {
		t.Errorf("the picture in an <img>: %q %v", shown, err)
	}
}
