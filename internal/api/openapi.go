package api

import (
	"embed"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/goccy/go-yaml"
)

// openapiYAML describes every route: written as YAML for people, served as
// JSON, and kept true by the route tests, which validate every request and
// response they make against it.
//
//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI returns the API's OpenAPI 3.1 document as JSON, as GET
// /openapi.json serves it.
func OpenAPI() ([]byte, error) {
	b, err := yaml.YAMLToJSON(openapiYAML)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return b, nil
}

// swaggerUI is the /docs page: Swagger UI's files as the npm package
// swagger-ui-dist ships them (make swagger-ui copies them here), with the
// page and its start-up script.
//
//go:embed swaggerui/www
var swaggerUI embed.FS

// docsPolicy lets the page load only what the binary serves: Swagger UI
// styles itself inline and draws its icons as data: URLs.
const docsPolicy = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// docsAsset serves /docs (the page) and /docs/:asset (its files).
func (h *handler) docsAsset(c *gin.Context) error {
	name := c.Param("asset")
	if name == "" {
		name = "index.html"
	}
	b, err := fs.ReadFile(swaggerUI, path.Join("swaggerui/www", path.Clean("/"+name)))
	if err != nil {
		return &Error{Code: CodeNotFound, Message: "no such file of the docs page"}
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "text/plain; charset=utf-8"
	}
	c.Header("Content-Security-Policy", docsPolicy)
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Cache-Control", "no-cache")
	c.Data(http.StatusOK, ctype, b)
	return nil
}

// queryParams reads from the document, for each operation as the router
// names it ("GET /v1/keys/:key"), the query parameters it takes: the
// document is the one list, and a parameter it does not name is refused
// (refuseUnknownQuery).
func queryParams(doc []byte) (map[string][]string, error) {
	type param struct {
		Ref  string `json:"$ref"`
		Name string `json:"name"`
		In   string `json:"in"`
	}
	var d struct {
		Paths      map[string]map[string]jsontext.Value `json:"paths"`
		Components struct {
			Parameters map[string]param `json:"parameters"`
		} `json:"components"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, err
	}
	query := func(ps []param) []string {
		var out []string
		for _, p := range ps {
			if ref, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
				p = d.Components.Parameters[ref]
			}
			if p.In == "query" {
				out = append(out, p.Name)
			}
		}
		return out
	}
	out := map[string][]string{}
	for path, item := range d.Paths {
		var shared []param
		if raw, ok := item["parameters"]; ok {
			if err := json.Unmarshal(raw, &shared); err != nil {
				return nil, err
			}
		}
		route := pathParam.ReplaceAllString(path, ":$1")
		for method, raw := range item {
			if method == "parameters" {
				continue
			}
			var op struct {
				Parameters []param `json:"parameters"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				return nil, err
			}
			out[strings.ToUpper(method)+" "+route] = append(query(shared), query(op.Parameters)...)
		}
	}
	return out, nil
}

// pathParam is a path template's parameter, {key}.
var pathParam = regexp.MustCompile(`\{([a-z]+)\}`)
