package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/units"
)

// verifyFlagHelp describes --verify of move and apply.
const verifyFlagHelp = "verification gate of the fast copy, before streaming starts: off, count (row counts per chunk) or full (row counts and content hashes per chunk, computed on both servers); a difference stops the move before the switch, keeping the copy for inspection"

// keepCopyHelp describes --keep-copy of move and apply.
const keepCopyHelp = "an interrupted or killed fast copy that wrote at least this much is kept and continued by the next run, which compares it with a fresh snapshot and copies again only what differs (default 64MB; 0: never)"

// sizeFlag reads a size flag of the fast copy: empty for the default (0),
// "0" for never (-1), else a size.
func sizeFlag(name, v string) (int64, error) {
	switch v {
	case "":
		return 0, nil
	case "0":
		return -1, nil
	}
	n, err := units.ParseBytes(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%s: %w", name, v, err)
	}
	if n <= 0 {
		return -1, nil
	}
	return n, nil
}

// moveFlags tune the moves of apply and move.
type moveFlags struct {
	opts     executor.MoveOptions
	progress time.Duration
	keepCopy string
	window   string
}

func (f *moveFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.DurationVar(&f.opts.LockTimeout, "cutover-lock-timeout", executor.DefaultCutoverLockTimeout, fmt.Sprintf("longest wait for a move's cutover lock per attempt, at most %v: writers to the shard queue behind a waiting lock, so this wait blocks them too", executor.MaxCutoverLockTimeout))
	fl.DurationVar(&f.opts.MaxPause, "max-pause", executor.DefaultMaxPause, "write-pause budget of a cutover attempt: it backs off if the destination has not caught up this long after the lock")
	fl.DurationVar(&f.progress, "progress", executor.DefaultProgressInterval, "interval of progress lines during moves")
	fl.StringVar(&f.opts.Strategy, "copy", executor.CopyStrategies[0], "how moves copy tables: fast (parallel COPY from the slot's snapshot, indexes built after the data) or native (the subscription copies them); fast falls back to native, saying why, where it cannot run")
	fl.StringVar(&f.opts.Verify, "verify", "", verifyFlagHelp+" (default: for apply the files' verify, else "+executor.DefaultVerify+")")
	fl.StringVar(&f.keepCopy, "keep-copy", "", keepCopyHelp)
	fl.StringVar(&f.window, "rollback-window", "", "after the cutover keep the source fenced, with a stream back from the new home, this long, so that pgms rollback can switch back with no write lost (default: for apply the files' rollback_window, else none; 0: none)")
	fl.BoolVar(&f.opts.KeepOnInterrupt, "keep-on-interrupt", false, "on Ctrl-C before a switch-over, keep every unfinished copy and its replication objects: a native copy goes on on the servers, and running again continues it")
}

// check refuses values no move accepts.
func (f *moveFlags) check() error {
	if !slices.Contains(executor.CopyStrategies, f.opts.Strategy) {
		return fmt.Errorf("--copy=%s: use %s", f.opts.Strategy, strings.Join(executor.CopyStrategies, " or "))
	}
	if err := executor.CheckCutoverLockTimeout(f.opts.LockTimeout); err != nil {
		return fmt.Errorf("--cutover-lock-timeout: %w", err)
	}
	if err := executor.CheckVerify(f.opts.Verify); err != nil {
		return fmt.Errorf("--verify: %w", err)
	}
	var err error
	if f.opts.KeepCopyBytes, err = sizeFlag("--keep-copy", f.keepCopy); err != nil {
		return err
	}
	switch d, err := time.ParseDuration(f.window); {
	case f.window == "":
	case err != nil || d < 0:
		return fmt.Errorf("--rollback-window=%s: a duration such as 1h, or 0 for none", f.window)
	case d == 0:
		f.opts.RollbackWindow = -1
	default:
		f.opts.RollbackWindow = d
	}
	return nil
}
