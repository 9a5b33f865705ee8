package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/pgms-dev/pgms/internal/bench/move/workload"
	"github.com/pgms-dev/pgms/internal/units"
)

// rollbackRound is one windowed move and its rollback, each measured from
// the journal (the cutover's pause and writers-blocked time) and from the
// writer (its slowest write while the command ran).
type rollbackRound struct {
	moveWall, backWall       time.Duration
	movePause, backPause     time.Duration
	moveBlocked, backBlocked time.Duration
	moveWriter, backWriter   time.Duration
	// onNewHome counts the writes acknowledged between the two switches:
	// they reached the old home only through the stream back.
	onNewHome int
	// lagBefore is the stream's lag (bytes the slot has not confirmed)
	// just before the rollback.
	lagBefore int64
}

// rollbackRounds moves the shard from a to b with a rollback window,
// lets the writer write on b for hold, and rolls it back to a, rounds
// times.
func rollbackRounds(ctx context.Context, bin string, a, b *node, w *workload.Writer, rounds int, hold time.Duration) ([]rollbackRound, error) {
	var out []rollbackRound
	for i := 0; i < rounds && ctx.Err() == nil; i++ {
		if err := settle(ctx, a, b); err != nil {
			return out, err
		}
		var r rollbackRound
		before := w.Written()
		began := time.Now()
		if err := runPGMS(ctx, bin, "pgms (windowed move)", "move", "--shard=1", "--from="+a.dsn, "--to="+b.dsn, "--activate-on-destination=yes",
			"--state-dsn="+a.dsn, "--progress=5s", "--copy=fast", "--rollback-window=1h"); err != nil {
			return out, fmt.Errorf("windowed move %d: %w", i+1, err)
		}
		r.moveWall = time.Since(began)
		r.moveWriter = slices.Max(append(w.LatenciesFrom(before), 0))
		var err error
		if r.movePause, r.moveBlocked, err = lastCutover(ctx, a, "move"); err != nil {
			return out, err
		}
		switched := w.Written()
		time.Sleep(hold)
		if err := b.conn.QueryRow(ctx, `SELECT COALESCE(max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)), 0)::bigint
			FROM pg_replication_slots WHERE slot_name LIKE 'pgms_move_sh0001%'`).Scan(&r.lagBefore); err != nil {
			return out, err
		}
		before = w.Written()
		r.onNewHome = before - switched
		began = time.Now()
		if err := runPGMS(ctx, bin, "pgms (rollback)", "rollback", "--shard=1", "--dsn="+a.dsn, "--dsn="+b.dsn); err != nil {
			return out, fmt.Errorf("rollback %d: %w", i+1, err)
		}
		r.backWall = time.Since(began)
		r.backWriter = slices.Max(append(w.LatenciesFrom(before), 0))
		if r.backPause, r.backBlocked, err = lastCutover(ctx, b, "rollback"); err != nil {
			return out, err
		}
		out = append(out, r)
		// The rollback renamed b's copy: drop it, as the moves do theirs.
		if _, err := b.conn.Exec(ctx, "DO $$ DECLARE s text; BEGIN FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 'sh0001old%' LOOP EXECUTE format('DROP SCHEMA %I CASCADE', s); END LOOP; END $$"); err != nil {
			return out, err
		}
		time.Sleep(500 * time.Millisecond)
	}
	return out, nil
}

func runPGMS(ctx context.Context, bin, label string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = io.MultiWriter(&out, prefixed(os.Stderr, "  "+label+": "))
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v\n%s", err, out.String())
	}
	return nil
}

// lastCutover reads the pause and writers-blocked time of the last step
// of kind in the journal on stateNode.
func lastCutover(ctx context.Context, stateNode *node, kind string) (pause, blocked time.Duration, err error) {
	var p, bl *float64
	err = stateNode.conn.QueryRow(ctx, `SELECT pause_ms, blocked_ms FROM microsharding.pgms_steps WHERE kind = $1 ORDER BY id DESC LIMIT 1`, kind).Scan(&p, &bl)
	ms := func(v *float64) time.Duration {
		if v == nil {
			return 0
		}
		return time.Duration(*v * float64(time.Millisecond))
	}
	return ms(p), ms(bl), err
}

func reportRollbacks(w io.Writer, rounds []rollbackRound, hold time.Duration, st workload.Stats, verifyErr error) {
	fmt.Fprintf(w, "\nrollback timeline (fast move a→b with a rollback window, %v of writes on b, pgms rollback to a):\n", hold)
	var mp, bp, mb, bb, mw, bw []time.Duration
	for i, r := range rounds {
		fmt.Fprintf(w, "  round %d: move %.1f s, pause %s, writers blocked %s, slowest write %s; %d writes on b (stream lag before the rollback %s); rollback %.1f s, pause %s, writers blocked %s, slowest write %s\n",
			i+1, r.moveWall.Seconds(), units.FormatMS(r.movePause), units.FormatMS(r.moveBlocked), units.FormatMS(r.moveWriter), r.onNewHome,
			units.FormatBytes(float64(r.lagBefore)), r.backWall.Seconds(), units.FormatMS(r.backPause), units.FormatMS(r.backBlocked), units.FormatMS(r.backWriter))
		mp, bp, mb, bb = append(mp, r.movePause), append(bp, r.backPause), append(mb, r.moveBlocked), append(bb, r.backBlocked)
		mw, bw = append(mw, r.moveWriter), append(bw, r.backWriter)
	}
	if len(rounds) == 0 {
		return
	}
	fmt.Fprintf(w, "  move: pause median %s max %s, writers blocked median %s max %s, slowest write median %s\n",
		units.FormatMS(median(mp)), units.FormatMS(slices.Max(mp)), units.FormatMS(median(mb)), units.FormatMS(slices.Max(mb)), units.FormatMS(median(mw)))
	fmt.Fprintf(w, "  rollback: pause median %s max %s, writers blocked median %s max %s, slowest write median %s\n",
		units.FormatMS(median(bp)), units.FormatMS(slices.Max(bp)), units.FormatMS(median(bb)), units.FormatMS(slices.Max(bb)), units.FormatMS(median(bw)))
	lost := "none lost"
	if verifyErr != nil {
		lost = "LOST: " + verifyErr.Error()
	}
	fmt.Fprintf(w, "  writer: %d inserts, %d updates acknowledged in all, verified on a after the last rollback: %s\n", st.Inserts, st.Updates, lost)
}
