package redischeckpoint

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// SetLogger routes go-redis's own log lines (connection-pool notices such
// as "pool.go: ... failed to dial", printed to stderr before the error they
// lead to) to logger at debug level: the error itself reaches the caller,
// and a worker logs it once, at the level it deserves. go-redis has one
// logger per process, so this is process-wide.
func SetLogger(logger *slog.Logger) {
	redis.SetLogger(redisLogger{logger})
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	r.l.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
