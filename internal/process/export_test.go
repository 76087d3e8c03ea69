package process

import (
	"io"
	"log/slog"
	"time"
)

// OpsWriteTimeout is the WriteTimeout of the api's and worker's metrics
// servers.
func OpsWriteTimeout() time.Duration {
	return newOpsServer(nil, slog.New(slog.NewTextHandler(io.Discard, nil))).WriteTimeout
}
