package fault

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

func TestHook(t *testing.T) {
	var seen []string
	boom := errors.New("boom")
	ctx := WithHook(context.Background(), func(p string) error {
		seen = append(seen, p)
		if p == "b" {
			return boom
		}
		return nil
	})
	if err := Point(ctx, "a"); err != nil {
		t.Fatalf("a: %v", err)
	}
	if err := Point(ctx, "b"); !errors.Is(err, boom) {
		t.Fatalf("b: got %v, want boom", err)
	}
	if err := Point(context.Background(), "c"); err != nil {
		t.Fatalf("no hook: %v", err)
	}
	if len(seen) != 2 {
		t.Fatalf("hook saw %v", seen)
	}
}

// TestKill runs this test binary again with PGMS_FAULT set and checks that
// it died of SIGKILL at the named point and not before.
func TestKill(t *testing.T) {
	if os.Getenv("FAULT_CHILD") == "1" {
		Point(context.Background(), "other")
		os.Stdout.WriteString("before\n")
		Point(context.Background(), "here")
		os.Stdout.WriteString("after\n")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill$")
	cmd.Env = append(os.Environ(), "FAULT_CHILD=1", EnvVar+"=here")
	out, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("child did not fail: %v, output %q", err, out)
	}
	ws := exit.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL", ws)
	}
	if string(out) != "before\n" {
		t.Fatalf("child output %q, want only %q", out, "before\n")
	}
}
