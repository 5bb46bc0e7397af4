package observability

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// redirections counts the MOVED and ASK replies a Cluster sends while
// slots move (a resharding, a failover), which go-redis follows without
// telling its hooks. go-redis reports them only to its process-wide
// OTelRecorder; every other method of it is left empty here, since the
// service's own hook already measures commands.
type redirections struct{ m *Metrics }

// RecordRedirections installs the process-wide recorder that counts
// redirections into dubebox_redis_redirections_total. Like go-redis's
// logger there is one per process, so run installs it once.
func RecordRedirections(m *Metrics) {
	redis.SetOTelRecorder(redirections{m})
}

func (r redirections) RecordError(_ context.Context, errorType string, _ redis.ConnInfo, _ string, _ bool, _ int) {
	switch errorType {
	case "MOVED":
		r.m.Redirected("moved")
	case "ASK":
		r.m.Redirected("ask")
	}
}

func (redirections) RecordOperationDuration(context.Context, time.Duration, redis.Cmder, int, error, redis.ConnInfo, int) {
}

func (redirections) RecordPipelineOperationDuration(context.Context, time.Duration, string, int, int, error, redis.ConnInfo, int) {
}
func (redirections) RecordConnectionCreateTime(context.Context, time.Duration, redis.ConnInfo) {}
func (redirections) RecordConnectionRelaxedTimeout(context.Context, int, redis.ConnInfo, string, string) {
}
func (redirections) RecordConnectionHandoff(context.Context, redis.ConnInfo, string)           {}
func (redirections) RecordMaintenanceNotification(context.Context, redis.ConnInfo, string)     {}
func (redirections) RecordConnectionWaitTime(context.Context, time.Duration, redis.ConnInfo)   {}
func (redirections) RecordConnectionClosed(context.Context, redis.ConnInfo, string, error)     {}
func (redirections) RecordPubSubMessage(context.Context, redis.ConnInfo, string, string, bool) {}
func (redirections) RecordStreamLag(context.Context, time.Duration, redis.ConnInfo, string, string, string) {
}
