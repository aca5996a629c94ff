package console_test

import (
	"context"
	"testing"
	"time"

	"github.com/projector-dev/projector/console"
	"github.com/projector-dev/projector/internal/testenv"
)

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithTimeout(t.Context(), d)
}

func console_Clean(s string) string { return console.Clean(s) }

func TestMain(m *testing.M) { testenv.Main(m) }
