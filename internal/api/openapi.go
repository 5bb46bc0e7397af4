package api

import (
	_ "embed" // the OpenAPI document
	"fmt"

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
