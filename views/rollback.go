package views

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/units"
)

// Rollback is what pgms rollback shows: the switch back to the old home,
// or the window closed.
type Rollback struct {
	Header
	Shard  int    `json:"shard"`
	Schema string `json:"schema"`
	// From served the shard (its move's destination); To is the old home.
	From string `json:"from"`
	To   string `json:"to"`
	// Outcome is rolled_back, already_done (the old home served it
	// already) or closed (the window ended, the shard stays on From).
	Outcome string `json:"outcome"`
	// Renamed is, for a closed window, the old home's copy's new name.
	Renamed string `json:"renamed,omitempty"`
	// Move is the switch back (absent when the window was closed).
	Move *Move `json:"move,omitempty"`
}

// NewRollback builds the report of a rollback from the node from to the
// old home to.
func NewRollback(shard int, schema, from, to string, r executor.MoveResult) *Rollback {
	v := &Rollback{Shard: shard, Schema: schema, From: from, To: to, Outcome: "rolled_back", Move: NewMove(from, to, r)}
	if r.AlreadyDone {
		v.Outcome = "already_done"
	}
	return v
}

// NewWindowClosed builds the report of a window closed on the old home to.
func NewWindowClosed(shard int, schema, from, to, renamed string) *Rollback {
	return &Rollback{Shard: shard, Schema: schema, From: from, To: to, Outcome: "closed", Renamed: renamed}
}

func (v *Rollback) text(w io.Writer) error {
	var b strings.Builder
	switch v.Outcome {
	case "closed":
		if v.Renamed == "" {
			fmt.Fprintf(&b, "the rollback window of %s on %s was closed already\n", v.Schema, v.To)
			break
		}
		fmt.Fprintf(&b, "closed the rollback window of %s: the stream from %s is dropped, %s on %s is renamed to %s (pgms cleanup drops it after cleanup_after)\n",
			v.Schema, v.From, v.Schema, v.To, v.Renamed)
	case "already_done":
		fmt.Fprintf(&b, "%s is already served by %s again; nothing to roll back\n", v.Schema, v.To)
	default:
		r := v.Move.r
		fmt.Fprintf(&b, "rolled %s back from %s to %s in %s\n", v.Schema, v.From, v.To, r.Total.Round(time.Millisecond))
		if r.Pause > 0 {
			fmt.Fprintf(&b, "  writers blocked at most %s (lock wait and pause of any cutover attempt); write pause %s (lock to commit %s), %s\n",
				units.FormatMS(r.Blocked), units.FormatMS(r.Pause), units.FormatMS(r.Core), lockRetries(r.Retries))
			fmt.Fprintf(&b, "  %s on %s renamed to %s; drop it with pgms cleanup when no longer needed\n", v.Schema, v.From, r.OldSchema)
		}
		// The files still place the shard where it was moved.
		fmt.Fprintf(&b, "  where topology files place the shard, place shard %d on %s there: until then the next apply moves it to %s again\n", v.Shard, v.To, v.From)
	}
	return flush(w, &b)
}
