// Package e2e holds the end-to-end proof of the Compose stack, run by
// `make e2e` (go test -tags e2e): the real dubebox binary, redis-server,
// Debian's prometheus-redis-exporter and prometheus with the repo's
// prometheus.yml and alert rules, then every query of every Grafana panel.
// No Docker engine is needed; docker-compose only parses the Compose file.
package e2e
