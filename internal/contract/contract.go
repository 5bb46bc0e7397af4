// Package contract replays requests against the service through Prism's
// validating proxy (@stoplight/prism-cli, installed by make contract in
// .ci/contract): a tool this project did not write judges whether the
// service does what its OpenAPI document says, both ways. The route tests
// of internal/api write the requests they send (the corpus) when
// DUBEBOX_CONTRACT_CORPUS names a file; the contract test replays them.
package contract

import "net/http"

// Request is one request of the corpus, as a route test sent it.
type Request struct {
	Method string      `json:"method"`
	Target string      `json:"target"`
	Header http.Header `json:"header,omitempty"`
	Body   string      `json:"body,omitempty"`
}
