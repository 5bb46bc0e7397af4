package api

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestRespond checks the one place errors become answers: every code has
// its status, and an API error whose code has none is a 500 "internal",
// noted for the request's log line at error, rather than Gin's default 200
// with an error body.
func TestRespond(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{&Error{Code: "no_such_code", Message: "made up"}, 500, CodeInternal},
		{&Error{Code: CodeNotFound, Message: "gone"}, 404, CodeNotFound},
		{&Error{Code: CodeHeadersTooLarge, Message: "big"}, 431, CodeHeadersTooLarge},
	}
	for code, status := range statusOf {
		tests = append(tests, struct {
			err    error
			status int
			code   string
		}{&Error{Code: code, Message: "m"}, status, code})
	}
	for _, tc := range tests {
		h := &handler{log: zap.NewNop()}
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		c.Request = httptest.NewRequest(http.MethodGet, "/", nil)
		h.respond(c, tc.err)
		if w.Code != tc.status {
			t.Errorf("%v: status %d, want %d", tc.err, w.Code, tc.status)
		}
		if got, _ := toAPIError(tc.err); got.Code != tc.code {
			t.Errorf("%v: code %s, want %s", tc.err, got.Code, tc.code)
		}
		f, _ := c.Value(failureKey).(*failure)
		if tc.status == 500 && (f == nil || f.level != zapcore.ErrorLevel) {
			t.Errorf("%v: a 500 was not noted for the log at error: %+v", tc.err, f)
		}
	}
}

// TestOpenAPIListsEveryErrorCode checks that the document's ErrorCode enum
// is exactly the codes the service answers with.
func TestOpenAPIListsEveryErrorCode(t *testing.T) {
	t.Parallel()
	b, err := OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas struct {
				ErrorCode struct {
					Enum []string `json:"enum"`
				}
			}
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(doc.Components.Schemas.ErrorCode.Enum))
	want := slices.Sorted(maps.Keys(statusOf))
	if !slices.Equal(got, want) {
		t.Errorf("openapi.yaml's ErrorCode enum is %v; the service answers %v", got, want)
	}
}
