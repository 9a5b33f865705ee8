package executor

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a strings.Builder safe for the reporter's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLineReporterHeartbeat checks that a move silent for the interval
// gets a line saying what it is doing, that one still talking gets none,
// and that a move over gets none any more.
func TestLineReporterHeartbeat(t *testing.T) {
	var out syncBuffer
	every := 60 * time.Millisecond
	r := NewLineReporter(&out, every)
	defer r.Close()
	phase := func(schema string, p Phase) {
		r.Report(Event{Time: time.Now(), Schema: schema, Phase: p, Kind: EventPhase, Message: "begins", LagBytes: -1})
	}
	phase("sh0001", PhaseBackfill)
	phase("sh0002", PhaseCatchUp)
	// sh0002 keeps talking, sh0001 stays silent.
	for end := time.Now().Add(3 * every); time.Now().Before(end); time.Sleep(every / 3) {
		r.Report(Event{Time: time.Now(), Schema: "sh0002", Phase: PhaseCatchUp, Kind: EventInfo, Message: "talking", LagBytes: -1})
	}
	text := out.String()
	if !strings.Contains(text, "sh0001 backfill: still at it, ") || strings.Contains(text, "sh0002 catch-up: still at it") {
		t.Errorf("heartbeats:\n%s", text)
	}
	r.Report(Event{Time: time.Now(), Schema: "sh0001", Phase: PhaseDone, Kind: EventEnd, LagBytes: -1})
	r.Report(Event{Time: time.Now(), Schema: "sh0002", Phase: PhaseDone, Kind: EventEnd, LagBytes: -1})
	before := out.String()
	time.Sleep(3 * every)
	if after := out.String(); after != before {
		t.Errorf("lines after the moves ended:\n%s", strings.TrimPrefix(after, before))
	}
	r.Close() // twice is harmless
}
