package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMoveContinuesAfterKill kills pgms (SIGKILL) inside the fast copy,
// under a writer, and runs the same move again: the rerun continues the
// copy it finds instead of starting over, and the move ends with every
// acknowledged write on the destination and nothing left behind.
func TestMoveContinuesAfterKill(t *testing.T) {
	bin := pgmsBinary(t)
	for _, point := range []string{"move.backfill.table", "move.backfill.copied", "move.backfill.indexed"} {
		t.Run(point, func(t *testing.T) {
			src, dst, a, b := moveNodes(t)
			w := startItemsWriter(t, src, dst)
			defer w.Stop()
			args := append(moveArgsFor(src, dst), "--keep-copy=1")
			cmd := exec.Command(bin, args...)
			cmd.Env = append(os.Environ(), "PGMS_FAULT="+point)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || !exit.Sys().(syscall.WaitStatus).Signaled() {
				t.Fatalf("pgms was not killed at %s: %v\n%s", point, err, out)
			}
			// The killed run's sessions end when the server notices: the
			// rerun waits for its run lock meanwhile.
			time.Sleep(50 * time.Millisecond)
			out, err = exec.Command(bin, append(args, "--lock-timeout=30s")...).CombinedOutput()
			if err != nil {
				t.Fatalf("re-run failed: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "continued the earlier copy") {
				t.Errorf("the re-run did not continue the copy:\n%s", out)
			}
			time.Sleep(100 * time.Millisecond)
			st := w.Stop()
			if len(st.Violations) > 0 {
				t.Errorf("writer violations: %v", st.Violations)
			}
			if err := w.Verify(context.Background(), b); err != nil {
				t.Errorf("after a kill at %s: %v\n%s", point, err, out)
			}
			assertMoved(t, a, b)
		})
	}
}
