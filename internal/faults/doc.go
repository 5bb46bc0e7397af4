// Package faults holds the fault tests, run by `make faults` (go test -tags
// faults): the built dubebox binary and its own redis-server processes,
// which the tests stall, kill, fill and flood, and slow or stuck clients.
// Each test prints what it injected and what it saw. The tests run one at
// a time: their bounds are tight, and on two cores they would otherwise
// measure each other.
package faults
