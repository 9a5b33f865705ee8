package views

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/internal/words"
)

// Move is what pgms move shows once the shard has moved (or been copied):
// the copy, the write pause of the cutover, what is left to clean up.
type Move struct {
	Header
	Schema string `json:"schema"`
	From   string `json:"from"`
	To     string `json:"to"`
	// Outcome is moved, copied (left inactive on the destination),
	// finished (an interrupted move completed) or already_done.
	Outcome string `json:"outcome"`
	// OldSchema is the source's name after the cutover; NewSchema the
	// destination's name of a copy left inactive.
	OldSchema string  `json:"old_schema,omitempty"`
	NewSchema string  `json:"new_schema,omitempty"`
	TookMS    float64 `json:"took_ms"`
	// The initial copy.
	Tables     int     `json:"tables"`
	Bytes      int64   `json:"bytes"`
	Rows       int64   `json:"rows"`
	BackfillMS float64 `json:"backfill_ms"`
	// The cutover: writers blocked at most WritersBlockedMS (lock wait and
	// pause of any attempt); PauseMS from the lock to the shard active on
	// the destination, CoreMS from the lock to the commit; OutageMS the
	// time no node served the shard while its activation was retried.
	WritersBlockedMS float64 `json:"writers_blocked_ms"`
	PauseMS          float64 `json:"pause_ms"`
	CoreMS           float64 `json:"core_ms"`
	OutageMS         float64 `json:"outage_ms"`
	Retries          int     `json:"retries"`
	// Verify is what the verification gate compared (absent: level off);
	// Resume what a run that continued a kept copy kept and redid.
	Verify *MoveVerify `json:"verify,omitempty"`
	Resume *MoveResume `json:"resume,omitempty"`

	r executor.MoveResult
}

type (
	// MoveVerify is the verification gate's outcome: what it compared at
	// Level, or why nothing was (Skipped).
	MoveVerify struct {
		Level   string  `json:"level"`
		Tables  int     `json:"tables"`
		Chunks  int     `json:"chunks"`
		Rows    int64   `json:"rows"`
		TookMS  float64 `json:"took_ms"`
		Skipped string  `json:"skipped,omitempty"`
	}
	// MoveResume is what a move that continued a kept copy did: Kept of
	// Chunks compared chunks stayed; the byte counts are shares of the
	// source tables' size.
	MoveResume struct {
		Chunks        int     `json:"chunks"`
		Kept          int     `json:"kept"`
		KeptBytes     int64   `json:"kept_bytes"`
		ReplacedBytes int64   `json:"replaced_bytes"`
		FreshBytes    int64   `json:"fresh_bytes"`
		TookMS        float64 `json:"took_ms"`
	}
)

// NewMove builds the report of a move between the named nodes.
func NewMove(from, to string, r executor.MoveResult) *Move {
	m := &Move{Schema: r.Schema, From: from, To: to, OldSchema: r.OldSchema, NewSchema: r.NewSchema, TookMS: ms(r.Total),
		Tables: r.Tables, Bytes: r.Bytes, Rows: r.Rows, BackfillMS: ms(r.Backfill),
		WritersBlockedMS: ms(r.Blocked), PauseMS: ms(r.Pause), CoreMS: ms(r.Core), OutageMS: ms(r.Outage), Retries: r.Retries,
		r: r}
	if v := r.Verify; v != nil {
		m.Verify = &MoveVerify{Level: v.Level, Tables: v.Tables, Chunks: v.Chunks, Rows: v.Rows, TookMS: ms(v.Took), Skipped: v.Skipped}
	}
	if c := r.Resume; c != nil {
		m.Resume = &MoveResume{Chunks: c.Chunks, Kept: c.Kept, KeptBytes: c.KeptBytes, ReplacedBytes: c.ReplacedBytes, FreshBytes: c.FreshBytes, TookMS: ms(c.Took)}
	}
	switch {
	case r.AlreadyDone:
		m.Outcome = "already_done"
	case r.NewSchema != "":
		m.Outcome = "copied"
	case r.Resumed && r.Pause == 0:
		m.Outcome = "finished"
	default:
		m.Outcome = "moved"
	}
	return m
}

func (m *Move) text(w io.Writer) error {
	var b strings.Builder
	r := m.r
	switch m.Outcome {
	case "already_done":
		fmt.Fprintf(&b, "%s is already active on %s; nothing to do\n", m.Schema, m.To)
		return flush(w, &b)
	case "copied":
		fmt.Fprintf(&b, "copied %s from %s to %s as %s (inactive) in %s\n", m.Schema, m.From, m.To, m.NewSchema, r.Total.Round(time.Millisecond))
	case "finished":
		fmt.Fprintf(&b, "finished the move of %s from %s to %s (source renamed to %s)\n", m.Schema, m.From, m.To, m.OldSchema)
		return flush(w, &b)
	default:
		fmt.Fprintf(&b, "moved %s from %s to %s in %s\n", m.Schema, m.From, m.To, r.Total.Round(time.Millisecond))
	}
	if r.Backfill > 0 {
		rate := ""
		if s := r.Backfill.Seconds(); s > 0 {
			rate = fmt.Sprintf(", %s/s", units.FormatBytes(float64(r.Bytes)/s))
		}
		fmt.Fprintf(&b, "  copied %s, %s, %d rows in %s%s\n", words.Count(r.Tables, "table"), units.FormatBytes(float64(r.Bytes)), r.Rows, r.Backfill.Round(time.Millisecond), rate)
	}
	if r.Resume != nil {
		fmt.Fprintf(&b, "  %s\n", r.Resume)
	}
	if r.Verify != nil {
		fmt.Fprintf(&b, "  %s\n", r.Verify)
	}
	if r.Pause > 0 {
		fmt.Fprintf(&b, "  writers blocked at most %s (lock wait and pause of any cutover attempt); write pause %s (lock to commit %s), %s\n",
			units.FormatMS(r.Blocked), units.FormatMS(r.Pause), units.FormatMS(r.Core), lockRetries(r.Retries))
		if r.Outage > 0 {
			fmt.Fprintf(&b, "  the shard was served by no node for %s while the activation was retried\n", r.Outage.Round(time.Millisecond))
		}
		if m.OldSchema == m.Schema {
			fmt.Fprintf(&b, "  source %s kept on %s, inactive and fenced, with a stream back from %s for its rollback window: pgms rollback switches back\n", m.Schema, m.From, m.To)
		} else {
			fmt.Fprintf(&b, "  source schema renamed to %s on %s; drop it with pgms cleanup when no longer needed\n", m.OldSchema, m.From)
		}
	}
	if m.NewSchema != "" {
		fmt.Fprintf(&b, "\nATTENTION: the shard was copied but NOT activated on the destination: the data still lives on %s and is served from there. Run the move with --activate-on-destination=yes to switch it over.\n", m.From)
	}
	return flush(w, &b)
}
