// Package fault lets crash tests kill pgms at named points of its work.
//
// Code marks the places where a crash would leave an interesting state:
//
//	if err := fault.Point(ctx, "move.ddl.end"); err != nil { return err }
//
// When the environment variable PGMS_FAULT names that point, the process
// sends itself SIGKILL there: no deferred function, no rollback, exactly
// like a power cut of the machine running pgms. In-process tests can instead
// attach a hook to the context (WithHook) that sees every point and may
// return an error, which the code treats like any failure at that place.
//
// PGMS_FAULT_PAUSE names a point where the process instead waits, for
// PGMS_FAULT_PAUSE_FOR (a Go duration, default 10s) or until its context
// ends, the first time it passes there: end-to-end tests use it to act
// while a run is in the middle of its work.
//
// Without those variables and without a hook a point costs two string
// compares.
package fault

import (
	"context"
	"os"
	"sync"
	"syscall"
	"time"
)

// EnvVar names the point at which the process kills itself.
const EnvVar = "PGMS_FAULT"

// EnvPause names the point at which the process waits; EnvPauseFor how
// long.
const (
	EnvPause    = "PGMS_FAULT_PAUSE"
	EnvPauseFor = "PGMS_FAULT_PAUSE_FOR"
)

var (
	armed     = sync.OnceValue(func() string { return os.Getenv(EnvVar) })
	pausing   = sync.OnceValue(func() string { return os.Getenv(EnvPause) })
	pauseOnce sync.Once
)

// Hook sees every point passed in a context carrying it; a non-nil error is
// returned from Point.
type Hook func(point string) error

type hookKey struct{}

// WithHook returns a context whose points call hook.
func WithHook(ctx context.Context, hook Hook) context.Context {
	return context.WithValue(ctx, hookKey{}, hook)
}

// Point marks a named place. It kills the process when PGMS_FAULT names it,
// and otherwise returns what the context's hook returns (nil without one).
func Point(ctx context.Context, name string) error {
	if a := armed(); a != "" && a == name {
		kill()
	}
	if p := pausing(); p != "" && p == name {
		pauseOnce.Do(func() {
			d, err := time.ParseDuration(os.Getenv(EnvPauseFor))
			if err != nil || d <= 0 {
				d = 10 * time.Second
			}
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		})
	}
	if h, ok := ctx.Value(hookKey{}).(Hook); ok && h != nil {
		return h(name)
	}
	return nil
}

// kill ends the process at once. SIGKILL cannot be caught, so nothing of
// the process runs after it; the loop only waits for delivery.
func kill() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
