package executor

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgms-dev/pgms/planner"
)

// TestLiveReporter feeds the live view a move's events and checks the
// block it draws, the lines it keeps above it, and that Close removes it.
func TestLiveReporter(t *testing.T) {
	var out syncBuffer
	l := NewLiveReporter(&out, 200)
	defer l.Close()
	l.SetSteps(3)
	l.StepStarted(0, planner.Step{})
	l.StepEnded(0, StepResult{})
	now := time.Now()
	l.Report(Event{Time: now, Schema: "sh0007", Phase: PhaseBackfill, Kind: EventPhase, Message: "copying 2 tables", LagBytes: -1})
	l.Report(Event{Time: now, Schema: "sh0007", Phase: PhaseBackfill, Kind: EventProgress, LagBytes: -1,
		Copy: &CopyProgress{Bytes: 1 << 20, TotalBytes: 4 << 20, Rate: 1 << 20}})
	l.Report(Event{Time: now, Schema: "sh0003", Phase: PhaseCatchUp, Kind: EventProgress, LagBytes: 2048})
	fmt.Fprint(l.Writer(), "[2/3] ~ move shard 7")
	fmt.Fprint(l.Writer(), " (sh0007) from a to b\n")

	l.mu.Lock()
	block := l.block(now.Add(2 * time.Second))
	l.mu.Unlock()
	want := []string{
		"  sh0003  catch-up  lag 2.00 kB  (2s in this phase)",
		"  sh0007  backfill   25%  ~1.00 MB of 4.00 MB table data  1.00 MB/s  ETA 3s  (2s in this phase)",
		"  2 moves running, 1 of 3 steps done, ",
	}
	if len(block) != 3 || block[0] != want[0] || block[1] != want[1] || !strings.HasPrefix(block[2], want[2]) {
		t.Errorf("block:\n%s\nwant:\n%s", strings.Join(block, "\n"), strings.Join(want, "\n"))
	}
	l.Report(Event{Time: now, Schema: "sh0003", Phase: PhaseDone, Kind: EventEnd, LagBytes: -1})
	l.Close()
	text := out.String()
	for _, w := range []string{"sh0007 backfill: copying 2 tables\n", "[2/3] ~ move shard 7 (sh0007) from a to b\n", "\x1b[J"} {
		if !strings.Contains(text, w) {
			t.Errorf("output lacks %q:\n%q", w, text)
		}
	}
	// The last thing written clears the block.
	if i := strings.LastIndex(text, "\x1b["); !strings.HasSuffix(text, "A\r\x1b[J") || i < 0 {
		t.Errorf("output does not end by clearing the block: %q", text[max(0, len(text)-80):])
	}
}
