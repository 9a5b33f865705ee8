package views

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/internal/words"
	"github.com/pgms-dev/pgms/state"
)

// Cleanup is what pgms cleanup shows: per node the leftovers it drops and
// those it keeps, with why, and then what became of each drop.
//
// In text it comes in three parts, because the command asks before it
// drops and reports each drop as it happens: Listing, OutcomeLine per
// object, Conclusion.
type Cleanup struct {
	Header
	// Retain is how long renamed move sources are kept, as a duration
	// ("168h").
	Retain string `json:"retain"`
	// Nodes are the nodes read, in name order; Unreadable those that
	// could not be read, whose leftovers were not looked at.
	Nodes      []CleanupNode `json:"nodes"`
	Unreadable []NodeError   `json:"unreadable"`
	// ToDrop counts the leftovers to drop, on DropNodes nodes.
	ToDrop    int `json:"to_drop"`
	DropNodes int `json:"drop_nodes"`
	// TableBytes and WALBytes are what the drops free: schema sizes, WAL
	// retained by slots.
	TableBytes int64 `json:"table_bytes"`
	WALBytes   int64 `json:"wal_bytes"`
	// DryRun: nothing was to be dropped. Declined: the question was
	// answered no.
	DryRun   bool `json:"dry_run"`
	Declined bool `json:"declined"`
	// Outcomes are the drops tried, in the order they ran; Dropped counts
	// the objects dropped and DroppedWALBytes the WAL their slots retained.
	Outcomes        []CleanupOutcome `json:"outcomes"`
	Dropped         int              `json:"dropped"`
	DroppedWALBytes int64            `json:"dropped_wal_bytes"`
}

// CleanupNode is one node's leftovers, those to drop first.
type CleanupNode struct {
	Node      string            `json:"node"`
	Leftovers []CleanupLeftover `json:"leftovers"`
}

// NodeError is a node that could not be read, and why.
type NodeError struct {
	Node  string `json:"node"`
	Error string `json:"error"`
}

// CleanupLeftover is one leftover of a move and the decision about it.
type CleanupLeftover struct {
	// Kind is old-schema, new-schema, copy, slot, publication or
	// subscription; Name the object's name.
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Shard int    `json:"shard"`
	// Bytes is a schema's size, RetainedBytes the WAL a slot retains.
	Bytes         int64  `json:"bytes,omitempty"`
	RetainedBytes int64  `json:"retained_bytes,omitempty"`
	Drop          bool   `json:"drop"`
	Reason        string `json:"reason"`

	leftover state.Leftover
}

// CleanupOutcome is what became of one object to drop.
type CleanupOutcome struct {
	Node string `json:"node"`
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Outcome is dropped, kept (Reason says why) or failed (Error).
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	Error   string `json:"error,omitempty"`
	// RetainedBytes is the WAL a dropped slot retained.
	RetainedBytes int64   `json:"retained_bytes,omitempty"`
	TookMS        float64 `json:"took_ms"`

	outcome executor.Outcome
}

// NewCleanup lists the verdicts per readable node of live.
func NewCleanup(live *state.Cluster, verdicts []state.Verdict, retain time.Duration) *Cleanup {
	c := &Cleanup{Retain: units.FormatDuration(retain), Nodes: []CleanupNode{}, Unreadable: []NodeError{}, Outcomes: []CleanupOutcome{}}
	byNode := map[string][]state.Verdict{}
	for _, v := range verdicts {
		byNode[v.Node] = append(byNode[v.Node], v)
	}
	for _, n := range live.Nodes {
		if n.Err != nil {
			c.Unreadable = append(c.Unreadable, NodeError{Node: n.Name, Error: n.Err.Error()})
			continue
		}
		cn := CleanupNode{Node: n.Name, Leftovers: []CleanupLeftover{}}
		var keep []CleanupLeftover
		for _, v := range byNode[n.Name] {
			l := CleanupLeftover{Kind: v.Leftover.Kind, Name: v.Leftover.Name, Shard: v.Leftover.Shard, Drop: v.Drop, Reason: v.Reason, leftover: v.Leftover}
			switch v.Leftover.Kind {
			case state.LeftoverOldSchema, state.LeftoverNewSchema:
				l.Bytes = v.Leftover.Bytes
			case state.LeftoverSlot:
				l.RetainedBytes = v.Leftover.RetainedBytes
			}
			if !v.Drop {
				keep = append(keep, l)
				continue
			}
			cn.Leftovers = append(cn.Leftovers, l)
			c.ToDrop++
			c.TableBytes += v.Leftover.Bytes
			if v.Leftover.Kind == state.LeftoverSlot {
				c.WALBytes += v.Leftover.RetainedBytes
			}
		}
		if len(cn.Leftovers) > 0 {
			c.DropNodes++
		}
		cn.Leftovers = append(cn.Leftovers, keep...)
		c.Nodes = append(c.Nodes, cn)
	}
	return c
}

// Record adds what became of one object to drop.
func (c *Cleanup) Record(o executor.Outcome) {
	co := CleanupOutcome{Node: o.Node, Kind: o.Leftover.Kind, Name: o.Leftover.Name, Reason: o.Reason,
		RetainedBytes: o.RetainedBytes, TookMS: float64(o.Took) / float64(time.Millisecond), outcome: o}
	switch {
	case o.Err != nil:
		co.Outcome, co.Error = "failed", dsn.Redact(pgutil.Describe(o.Err))
	case !o.Dropped:
		co.Outcome = "kept"
	default:
		co.Outcome = "dropped"
		c.Dropped++
		c.DroppedWALBytes += o.RetainedBytes
	}
	c.Outcomes = append(c.Outcomes, co)
}

func (c *Cleanup) text(w io.Writer) error {
	if err := c.Listing(w); err != nil {
		return err
	}
	var b strings.Builder
	for _, o := range c.Outcomes {
		if o.Error == "" {
			b.WriteString(OutcomeLine(o.outcome))
		}
	}
	if err := flush(w, &b); err != nil {
		return err
	}
	return c.Conclusion(w)
}

// Listing writes per node what cleanup drops and what it keeps, and the
// count of objects to drop.
func (c *Cleanup) Listing(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Cleanup of %s; renamed move sources are kept for %s.\n", words.Count(len(c.Nodes)+len(c.Unreadable), "node"), c.Retain)
	for _, n := range c.Nodes {
		b.WriteString("\n")
		drop := 0
		for _, l := range n.Leftovers {
			if l.Drop {
				drop++
			}
		}
		switch {
		case len(n.Leftovers) == 0:
			fmt.Fprintf(&b, "%s: no leftovers\n", n.Node)
			continue
		case drop == 0:
			fmt.Fprintf(&b, "%s: nothing to drop\n", n.Node)
		default:
			fmt.Fprintf(&b, "%s: %d to drop\n", n.Node, drop)
		}
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, l := range n.Leftovers {
			mark := "  - "
			if !l.Drop {
				mark = "    kept: "
			}
			fmt.Fprintf(tw, "%s%s\t%s\t%s\n", mark, l.leftover, l.size(), l.Reason)
		}
		tw.Flush()
	}
	if c.ToDrop == 0 {
		b.WriteString("\n")
		return flush(w, &b)
	}
	fmt.Fprintf(&b, "\n%s to drop on %s", words.Count(c.ToDrop, "object"), words.Count(c.DropNodes, "node"))
	var parts []string
	if c.TableBytes > 0 {
		parts = append(parts, units.FormatBytes(float64(c.TableBytes))+" of tables")
	}
	if c.WALBytes > 0 {
		parts = append(parts, units.FormatBytes(float64(c.WALBytes))+" of WAL retained by slots")
	}
	if len(parts) > 0 {
		fmt.Fprintf(&b, ": %s", strings.Join(parts, ", "))
	}
	b.WriteString(".\n")
	return flush(w, &b)
}

// size is what a leftover costs: a schema's size, a slot's retained WAL.
func (l CleanupLeftover) size() string {
	switch l.Kind {
	case state.LeftoverOldSchema, state.LeftoverNewSchema:
		return units.FormatBytes(float64(l.Bytes))
	case state.LeftoverSlot:
		return units.FormatBytes(float64(l.RetainedBytes)) + " WAL"
	}
	return ""
}

// OutcomeLine is the line written as an object is dropped or kept; a
// failure is an error, not a line.
func OutcomeLine(o executor.Outcome) string {
	if !o.Dropped {
		return fmt.Sprintf("%s: kept %s: %s\n", o.Node, o.Leftover, o.Reason)
	}
	note := ""
	switch o.Leftover.Kind {
	case state.LeftoverSlot:
		note = fmt.Sprintf(" (it retained %s of WAL)", units.FormatBytes(float64(o.RetainedBytes)))
	case state.LeftoverOldSchema, state.LeftoverNewSchema:
		note = fmt.Sprintf(" (%s) in %s", units.FormatBytes(float64(o.Leftover.Bytes)), o.Took.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s: dropped %s%s\n", o.Node, o.Leftover, note)
}

// Conclusion writes the last line: nothing to clean up, a dry run, a
// refusal, or how many objects were dropped.
func (c *Cleanup) Conclusion(w io.Writer) error {
	var b strings.Builder
	switch {
	case c.ToDrop == 0:
		b.WriteString("Nothing to clean up.\n")
	case c.DryRun:
		b.WriteString("Dry run: nothing dropped.\n")
	case c.Declined:
		b.WriteString("Nothing dropped.\n")
	default:
		fmt.Fprintf(&b, "\nDropped %d of %d objects", c.Dropped, c.ToDrop)
		if c.DroppedWALBytes > 0 {
			fmt.Fprintf(&b, "; the slots dropped had retained %s of WAL", units.FormatBytes(float64(c.DroppedWALBytes)))
		}
		b.WriteString(".\n")
	}
	return flush(w, &b)
}
