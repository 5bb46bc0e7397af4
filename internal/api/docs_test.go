package api_test

import (
	"context"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDocsFiles checks the page's files as a client gets them: the page,
// Swagger UI's script and style from the binary, and 404 for anything else.
func TestDocsFiles(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	for _, tc := range []struct {
		path, ctype string
		status      int
	}{
		{"/docs", "text/html; charset=utf-8", 200},
		{"/docs/docs.js", "text/javascript; charset=utf-8", 200},
		{"/docs/swagger-ui-bundle.js", "text/javascript; charset=utf-8", 200},
		{"/docs/swagger-ui.css", "text/css; charset=utf-8", 200},
		{"/docs/LICENSE", "text/plain; charset=utf-8", 200},
		{"/docs/nothing.js", "application/json; charset=utf-8", 404},
		{"/docs/..%2Fopenapi.yaml", "application/json; charset=utf-8", 404},
	} {
		w := e.do(t, "GET", tc.path, "")
		if w.Code != tc.status || w.Header().Get("Content-Type") != tc.ctype {
			t.Errorf("GET %s: %d %s, want %d %s", tc.path, w.Code, w.Header().Get("Content-Type"), tc.status, tc.ctype)
		}
		csp := w.Header().Get("Content-Security-Policy")
		if w.Code == 200 && (!strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "base-uri 'none'") || !strings.Contains(csp, "form-action 'none'")) {
			t.Errorf("GET %s: Content-Security-Policy %q does not keep the page to its own origin, its base and its forms", tc.path, csp)
		}
	}
}

// headlessChromium starts Debian's Chromium, headless, with a profile of
// its own and whatever flags the test adds, for 30 s at most.
func headlessChromium(t *testing.T, browser string, flags ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
	)
	actx, cancel := chromedp.NewExecAllocator(t.Context(), append(opts, flags...)...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// needChromium finds Chromium, or fails saying how to get it.
func needChromium(t *testing.T) string {
	t.Helper()
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: install Debian's chromium (apt-get install -y chromium), as .ci/run does")
	}
	return browser
}

// TestDocsPage opens /docs in headless Chromium, as a user would: the page
// loads the document from the service, and "Try it out" on GET
// /v1/kv/{key} sends a real request from the page and shows the value that
// is in Redis.
func TestDocsPage(t *testing.T) {
	t.Parallel()
	browser := needChromium(t)
	e := newEnv(t, "")
	if w := e.do(t, "PUT", "/v1/kv/greeting", `{"value":"hello from redis"}`); w.Code != 200 {
		t.Fatalf("seeding: %d %s", w.Code, w.Body)
	}
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)

	ctx := headlessChromium(t, browser)

	const op = "#operations-strings-getString"
	css := func(sel string) chromedp.CSS { return chromedp.CSS(op + " " + sel) }
	err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/docs"),
		chromedp.WaitVisible(chromedp.CSS(op)),
		chromedp.Click(css(".opblock-summary-control")),
		chromedp.Click(css(".try-out__btn")),
		chromedp.SendKeys(css(`input[placeholder="key"]`), "greeting"),
		chromedp.Click(css(".execute")),
		chromedp.WaitVisible(css(".live-responses-table tr.response .response-col_status")),
	)
	if err != nil {
		t.Fatalf("driving /docs in Chromium: %v", err)
	}
	title, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".info .title")))
	if err != nil {
		t.Fatal(err)
	}
	status, err := chromedp.Run(ctx, chromedp.Text(css(".live-responses-table tr.response .response-col_status")))
	if err != nil {
		t.Fatal(err)
	}
	body, err := chromedp.Run(ctx, chromedp.Text(css(".live-responses-table tr.response .response-col_description")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(title, "DubeBox") {
		t.Errorf("the page's title is %q: it did not load the service's document", title)
	}
	if !strings.HasPrefix(strings.TrimSpace(status), "200") || !strings.Contains(body, "hello from redis") {
		t.Errorf("Try it out on GET /v1/kv/{key} showed %q %q, want 200 and the value in Redis", status, body)
	}
}
