package planner

import (
	"fmt"
	"time"
)

// FormatVersion is the version of the plan's JSON form (pgms plan
// -format=json and saved plan files). It changes only when a field changes
// meaning or disappears; new fields may appear within a version.
const FormatVersion = 1

// StepKind is what a step does.
type StepKind string

// The step kinds, in the order a plan runs them.
const (
	StepInstall    StepKind = "install"    // install or upgrade the library on a node
	StepAllocate   StepKind = "allocate"   // create a range of shards, migrate, maybe activate
	StepActivate   StepKind = "activate"   // activate a range of existing shards
	StepDeactivate StepKind = "deactivate" // deactivate a range of shards
	StepMove       StepKind = "move"       // move one shard between nodes online
	StepCleanup    StepKind = "cleanup"    // drop a leftover of an earlier move
	StepDrop       StepKind = "drop"       // drop shards listed in a removed block
	StepRetire     StepKind = "retire"     // forget a retired node that holds nothing any more
)

// Risk codes mark steps a pipeline may want a person to approve. They are
// stable: scripts may match on them.
const (
	CodeDropOldSchema  = "PGMS-D01" // cleanup drops a renamed move source (its data is the pre-move copy)
	CodeDropCopy       = "PGMS-D02" // cleanup drops an inactive copy or a half-done move's copy
	CodeDropShard      = "PGMS-D03" // drop of a shard schema with everything in it
	CodeDropSlot       = "PGMS-C01" // cleanup drops a replication slot (frees retained WAL)
	CodeDropReplObject = "PGMS-C02" // cleanup drops a publication or subscription
)

// Range is an inclusive range of shard numbers.
type Range struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// Len is the number of shards in the range.
func (r Range) Len() int { return r.To - r.From + 1 }

func (r Range) String() string {
	if r.From == r.To {
		return fmt.Sprintf("%d", r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// Step is one change. Which fields are set depends on Kind.
type Step struct {
	Kind StepKind `json:"kind"`
	// Node is where the step runs (every kind but move).
	Node string `json:"node,omitempty"`
	// From and To are the source and destination of a move.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Shards is the range a step acts on; a move acts on one shard.
	Shards *Range `json:"shards,omitempty"`
	// Schemas are the shard schema names of Shards (first and last for
	// long ranges are enough to read; the list is complete).
	Schemas []string `json:"schemas,omitempty"`
	// Activate: an allocate activates after migrating; a move activates on
	// the destination at cutover.
	Activate bool `json:"activate,omitempty"`
	// Resume marks a move that continues an interrupted one.
	Resume bool `json:"resume,omitempty"`
	// Library versions of an install step (from 0 with Fresh false means
	// pg-microsharding's library).
	LibraryFrom  int  `json:"library_from,omitempty"`
	LibraryTo    int  `json:"library_to,omitempty"`
	LibraryFresh bool `json:"library_fresh,omitempty"`
	// Object and ObjectKind name what a cleanup drops ("schema",
	// "publication", "slot", "subscription").
	Object     string `json:"object,omitempty"`
	ObjectKind string `json:"object_kind,omitempty"`
	// Bytes is the data a move copies or a cleanup/drop frees; for a slot,
	// the WAL it retains.
	Bytes int64 `json:"bytes,omitempty"`
	// Reason says in one line why the step is needed.
	Reason string `json:"reason"`
	// Source is the topology position that asks for the step (file:line),
	// when one does.
	Source string `json:"source,omitempty"`
	// Code is a risk code for destructive steps (see the Code constants).
	Code string `json:"code,omitempty"`
	// NodeID is, for a retire step, the pgms id of the node retired.
	NodeID string `json:"node_id,omitempty"`
	// Verify is, for a move, the level of the gate that compares the copy
	// with the source before the switch (the files' verify).
	Verify string `json:"verify,omitempty"`
	// RollbackWindow is, for a move, how long after its cutover the shard
	// can be switched back (the files' rollback_window; empty: no window).
	RollbackWindow string `json:"rollback_window,omitempty"`
}

// Symbol is the one-character mark of a step in the text plan.
func (s Step) Symbol() string {
	switch s.Kind {
	case StepInstall, StepAllocate:
		return "+"
	case StepCleanup, StepDrop, StepRetire:
		return "-"
	default:
		return "~"
	}
}

// Problem is a reason the planner refuses to plan (an error) or something a
// reviewer should know (a warning).
type Problem struct {
	Summary string `json:"summary"`
	Detail  string `json:"detail,omitempty"`
	Node    string `json:"node,omitempty"`
	Shard   *int   `json:"shard,omitempty"`
	Source  string `json:"source,omitempty"`
}

// Unmanaged is a run of live shards on one node that no shards block
// places: pgms reports and never touches them.
type Unmanaged struct {
	Node   string `json:"node"`
	Shards Range  `json:"shards"`
	Active bool   `json:"active"`
}

// NodeInfo is a node as the plan saw it.
type NodeInfo struct {
	Name string `json:"name"`
	Addr string `json:"addr"` // host:port/database, never a password
	// Registered marks a node that is not in the files but in the node
	// registry: pgms still visits it, and shards on it are live.
	Registered bool `json:"registered,omitempty"`
	// Retired marks a node a removed block retires.
	Retired bool `json:"retired,omitempty"`
}

// InProgress is work another run is doing on a shard right now (it holds
// the shard's claim on a node): the plan leaves the shard alone.
type InProgress struct {
	Shard   int    `json:"shard"`
	Schema  string `json:"schema,omitempty"`
	Node    string `json:"node"`
	Purpose string `json:"purpose,omitempty"` // e.g. "move a → b (source)"
	Holder  string `json:"holder"`            // who: command, pid, host, user, since
}

// Drain is a node the files drain that still holds shards the files place
// on it: nothing moves until rebalance rewrites the placement.
type Drain struct {
	Node   string `json:"node"`
	Shards int    `json:"shards"`
	// Ranges are the shards still placed on it, e.g. "1, 5-7".
	Ranges string `json:"ranges"`
	Source string `json:"source,omitempty"` // where drain = true is set
}

// Window is a moved shard in its rollback window: its old home keeps a
// fenced copy, kept current by a stream from its new home, so that pgms
// rollback can switch back until Until.
type Window struct {
	Shard  int    `json:"shard"`
	Schema string `json:"schema"`
	// Node is the old home, holding the fenced copy; To the new home,
	// which serves the shard and streams it back.
	Node  string    `json:"node"`
	To    string    `json:"to"`
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// RetainedBytes is the WAL the stream's slot on To holds back: the
	// reverse stream's lag and its cost on that node's disk.
	RetainedBytes int64 `json:"retained_bytes"`
	// Expired: Until has passed; cleanup closes the window.
	Expired bool `json:"expired,omitempty"`
}

// RunInfo describes the run holding the run lock while the plan was made.
type RunInfo struct {
	Holder string `json:"holder"`
	// Steps are the steps it was running, one line each.
	Steps []string `json:"steps,omitempty"`
}

// Summary counts the steps by kind.
type Summary struct {
	Install    int   `json:"install"`
	Allocate   int   `json:"allocate"` // shards, not steps
	Activate   int   `json:"activate"`
	Deactivate int   `json:"deactivate"`
	Move       int   `json:"move"`
	MoveBytes  int64 `json:"move_bytes"`
	Cleanup    int   `json:"cleanup"`
	Drop       int   `json:"drop"` // shards
	Retire     int   `json:"retire,omitempty"`
}

// Changes is the number of changes the summary counts.
func (s Summary) Changes() int {
	return s.Install + s.Allocate + s.Activate + s.Deactivate + s.Move + s.Cleanup + s.Drop + s.Retire
}

// Plan is the ordered list of steps that takes the live cluster to the
// topology, with what the planner saw and why it refused, if it did.
type Plan struct {
	FormatVersion int `json:"format_version"`
	// ConfigFingerprint and StateFingerprint identify the topology files
	// and the live state the plan was made from (see Snapshot).
	ConfigFingerprint string `json:"config_fingerprint"`
	StateFingerprint  string `json:"state_fingerprint"`
	// Files are the topology files read, Nodes the nodes of the topology.
	Files []string   `json:"files"`
	Nodes []NodeInfo `json:"nodes"`
	// ShardCount and ActiveCount describe the topology.
	ShardCount  int `json:"shard_count"`
	ActiveCount int `json:"active_count"`

	Steps     []Step      `json:"steps"`
	Unmanaged []Unmanaged `json:"unmanaged,omitempty"`
	// InProgress lists shards other runs are working on right now; Running
	// describes the run holding the run lock, if one did.
	InProgress []InProgress `json:"in_progress,omitempty"`
	Running    *RunInfo     `json:"running,omitempty"`
	// Drains lists drained nodes that still hold shards placed on them.
	Drains []Drain `json:"drains,omitempty"`
	// Windows lists the rollback windows open.
	Windows []Window `json:"windows,omitempty"`
	// Kept lists leftovers that stay because they are within retention.
	Kept     []Step    `json:"kept,omitempty"`
	Errors   []Problem `json:"errors,omitempty"`
	Warnings []Problem `json:"warnings,omitempty"`
	Summary  Summary   `json:"summary"`
}

// HasChanges reports whether the plan would change anything.
func (p *Plan) HasChanges() bool { return len(p.Steps) > 0 }

// Pending reports whether the cluster differs from the files, whether or
// not this plan has steps for it: steps, shards other runs are changing,
// drains that wait for a rebalance. plan -detailed-exitcode exits 2 then.
func (p *Plan) Pending() bool { return p.HasChanges() || len(p.InProgress) > 0 || len(p.Drains) > 0 }

// HasErrors reports whether the planner refused to plan.
func (p *Plan) HasErrors() bool { return len(p.Errors) > 0 }
