package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/dubebox/dubebox/internal/api"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gin-gonic/gin"
)

// described is the OpenAPI document and a router over it, loaded once for
// the package's tests.
var described = sync.OnceValues(func() (*openapiDoc, error) {
	b, err := api.OpenAPI()
	if err != nil {
		return nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	// The docs page's files, a stream's first bytes (HEAD), and the values
	// the tests write and read as bytes of their own type are what the
	// validator reads as strings.
	for _, ctype := range []string{"text/html", "text/javascript", "text/css", "text/event-stream", "image/png", "image/webp", "image/gif"} {
		openapi3filter.RegisterBodyDecoder(ctype, openapi3filter.FileBodyDecoder)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &openapiDoc{T: doc, router: router}, nil
})

type openapiDoc struct {
	*openapi3.T
	router routers.Router
}

func openapiOf(t testing.TB) *openapiDoc {
	t.Helper()
	d, err := described()
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return d
}

// checkAgainstOpenAPI validates one exchange against the document: the
// response always (its status must be one the operation declares, its body
// its schema), and the request whenever the service accepted it. A request
// the document cannot route (an encoded slash in a key, an unknown path or
// method) must have been refused with the error shape.
func checkAgainstOpenAPI(t testing.TB, req *http.Request, body []byte, w *httptest.ResponseRecorder) {
	t.Helper()
	if _, ok := t.(*testing.B); ok {
		return
	}
	d := openapiOf(t)
	ctx := context.Background()
	req = req.Clone(ctx)
	req.Body = io.NopCloser(bytes.NewReader(body))
	if ct := req.Header.Get("Content-Type"); len(body) > 0 && (ct == "" || strings.HasPrefix(ct, "application/x-www-form-urlencoded")) {
		// The service reads these bodies as JSON (curl -d sends a form
		// type), as the document's description says.
		req.Header.Set("Content-Type", "application/json")
	}
	switch req.Method {
	case http.MethodOptions:
		checkOptions(t, req, w)
		return
	case http.MethodHead:
		// HEAD answers what GET would; the recorder keeps the body the
		// HTTP server drops, so GET's description applies whole.
		req.Method = http.MethodGet
	}
	route, params, err := d.router.FindRoute(req)
	if w.Code == http.StatusMethodNotAllowed && w.Header().Get("Allow") == "" {
		t.Errorf("%s %s answered 405 without Allow", req.Method, req.URL)
	}
	if err != nil || w.Code == http.StatusMethodNotAllowed {
		// 405 is no operation's: the path does not serve the method (the
		// document's introduction describes it).
		if w.Code < 400 {
			t.Errorf("%s %s answered %d but openapi.yaml does not describe it: %v", req.Method, req.URL, w.Code, err)
			return
		}
		var v any
		if jerr := json.Unmarshal(w.Body.Bytes(), &v); jerr != nil {
			t.Errorf("%s %s answered %d without a JSON error: %q", req.Method, req.URL, w.Code, w.Body.String())
			return
		}
		if verr := d.Components.Schemas["Error"].Value.VisitJSON(v); verr != nil {
			t.Errorf("%s %s answered %d with a body that is not the Error schema: %v", req.Method, req.URL, w.Code, verr)
		}
		return
	}
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	if w.Code < 300 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Errorf("%s %s: the service accepted a request openapi.yaml calls invalid: %v", req.Method, req.URL, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 w.Code,
		Header:                 w.Header(),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	out.SetBodyBytes(w.Body.Bytes())
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s %s answered %d, which openapi.yaml does not allow: %v", req.Method, req.URL, w.Code, err)
	}
	checkHeadersDeclared(t, req, route, w)
}

// generalHeaders are the answer headers the document's introduction
// describes for every answer (HTTP's own, the data answers' caching and
// sniffing rules, CORS), rather than each response.
var generalHeaders = []string{"Content-Type", "Content-Length", "Date", "Cache-Control", "X-Content-Type-Options",
	"Content-Security-Policy", "Vary", "Allow"}

// checkHeadersDeclared checks the answer's headers against its response's
// description both ways: each header sent is declared there (or is one of
// generalHeaders), and each declared required is sent.
func checkHeadersDeclared(t testing.TB, req *http.Request, route *routers.Route, w *httptest.ResponseRecorder) {
	t.Helper()
	resp := route.Operation.Responses.Status(w.Code)
	if resp == nil || resp.Value == nil {
		return // ValidateResponse has said so
	}
	declared := map[string]bool{}
	for name, h := range resp.Value.Headers {
		declared[http.CanonicalHeaderKey(name)] = true
		if h.Value != nil && h.Value.Required && w.Header().Get(name) == "" {
			t.Errorf("%s %s answered %d without %s, which openapi.yaml says it always has", req.Method, req.URL, w.Code, name)
		}
	}
	for name := range w.Header() {
		if !declared[name] && !slices.Contains(generalHeaders, name) && !strings.HasPrefix(name, "Access-Control-") {
			t.Errorf("%s %s answered %d with %s, which openapi.yaml does not declare on that response", req.Method, req.URL, w.Code, name)
		}
	}
}

// checkOptions checks an OPTIONS answer: 204 with the methods in Allow, or
// a CORS preflight's answer, which rs/cors makes.
func checkOptions(t testing.TB, req *http.Request, w *httptest.ResponseRecorder) {
	t.Helper()
	switch {
	case w.Code == http.StatusNotFound:
		// No such route: the error shape, checked by the caller's tests.
	case w.Code != http.StatusNoContent:
		t.Errorf("OPTIONS %s answered %d, want 204", req.URL, w.Code)
	case req.Header.Get("Access-Control-Request-Method") != "":
	case !strings.Contains(w.Header().Get("Allow"), "OPTIONS"):
		t.Errorf("OPTIONS %s: Allow %q does not list OPTIONS", req.URL, w.Header().Get("Allow"))
	}
}

// TestOpenAPIDescribesEveryRoute compares the router's routes with the
// document's operations: a route served but not described, or described but
// not served, fails.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	d := openapiOf(t)
	if !strings.HasPrefix(d.OpenAPI, "3.1") {
		t.Errorf("openapi: %s, want 3.1", d.OpenAPI)
	}
	e := newEnv(t, "")
	param := regexp.MustCompile(`/:([a-z]+)`)
	var served, documented []string
	var heads []string
	for _, r := range routesOf(t, e) {
		route := r.Method + " " + param.ReplaceAllString(r.Path, "/{$1}")
		if r.Method == http.MethodHead {
			// HEAD is described once, in the document's introduction.
			heads = append(heads, strings.TrimPrefix(route, "HEAD "))
			continue
		}
		served = append(served, route)
	}
	for path, item := range d.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	sort.Strings(served)
	sort.Strings(documented)
	for _, s := range served {
		if !slices.Contains(documented, s) {
			t.Errorf("served but not described in openapi.yaml: %s", s)
		}
	}
	for _, s := range documented {
		if !slices.Contains(served, s) {
			t.Errorf("described in openapi.yaml but not served: %s", s)
		}
		if path, ok := strings.CutPrefix(s, "GET "); ok && !slices.Contains(heads, path) && path != "/set/{key}/{value}" {
			t.Errorf("GET %s is served but HEAD is not", path)
		}
	}
}

// TestOpenAPIIsServed checks that /openapi.json is the document.
func TestOpenAPIIsServed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	w := e.do(t, "GET", "/openapi.json", "")
	want, _ := api.OpenAPI()
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), want) || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d %s, %d bytes; want 200 application/json with the document", w.Code, w.Header().Get("Content-Type"), w.Body.Len())
	}
}

// routesOf lists the router's routes as requests see them: Gin lists a
// route registered with an escaped colon (/v1/kv\\:batchGet) escaped until
// it serves its first request.
func routesOf(t *testing.T, e *env) gin.RoutesInfo {
	t.Helper()
	engine, ok := e.h.(*gin.Engine)
	if !ok {
		t.Fatalf("api.New returned a %T, want *gin.Engine", e.h)
	}
	routes := engine.Routes()
	for i := range routes {
		routes[i].Path = strings.ReplaceAll(routes[i].Path, `\:`, ":")
	}
	return routes
}
