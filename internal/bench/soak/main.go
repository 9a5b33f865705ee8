// Command soak runs the fault schedule of package soak for a given time
// and prints what happened: faults injected, moves done, writes
// acknowledged and lost (which must be 0). make soak runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/pgms-dev/pgms/internal/soak"
)

func main() {
	duration := flag.Duration("duration", 10*time.Minute, "how long to run rounds")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the fault schedule")
	shards := flag.Int("shards", 30, "shards in the cluster; every round moves them all")
	writers := flag.Int("writers", 6, "shards written to during the run")
	every := flag.Duration("fault-every", 1500*time.Millisecond, "mean time between faults during an apply")
	verbose := flag.Bool("v", false, "print every event")
	flag.Parse()

	dir, err := os.MkdirTemp("", "pgms-soak-bin-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "pgms")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/pgms").CombinedOutput(); err != nil {
		fatal(fmt.Errorf("go build: %v\n%s", err, out))
	}
	cfg := soak.Config{Seed: *seed, Shards: *shards, Writers: *writers, Duration: *duration, FaultEvery: *every, Binary: bin}
	if *verbose {
		cfg.Log = os.Stdout
	}
	fmt.Printf("soak: seed %d, %d shards, %d written, faults every ~%v, for %v\n", *seed, *shards, *writers, *every, *duration)
	rep, err := soak.Run(context.Background(), cfg)
	fmt.Println("soak:", rep)
	if err != nil || rep.Lost > 0 {
		fatal(fmt.Errorf("soak failed (replay with -seed %d): %v", *seed, err))
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "soak:", err)
	os.Exit(1)
}
