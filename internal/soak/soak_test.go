package soak

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShortSchedule runs one round of the fault schedule: an apply of 30
// moves under write load with faults every second or so, then applies
// until the cluster converges. PGMS_SOAK_SEED replays a schedule.
func TestShortSchedule(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault schedule takes a minute or two")
	}
	bin := filepath.Join(t.TempDir(), "pgms")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/pgms").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PGMS_SOAK_SEED"); s != "" {
		var v uint64
		for _, c := range s {
			v = v*10 + uint64(c-'0')
		}
		seed = v
	}
	var log strings.Builder
	rep, err := Run(context.Background(), Config{Seed: seed, Shards: 30, Writers: 4, Rounds: 1, FaultEvery: 1500 * time.Millisecond, Binary: bin, Log: &log})
	t.Logf("seed %d (replay with PGMS_SOAK_SEED=%d): %s", seed, seed, rep)
	if err != nil || rep.Lost > 0 || len(rep.Violations) > 0 {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if rep.Moves < 30 || rep.FaultsTotal == 0 {
		t.Errorf("too little happened:\n%s", log.String())
	}
	if testing.Verbose() {
		t.Log("\n" + log.String())
	}
}
