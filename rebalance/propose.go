package rebalance

import (
	"errors"
	"time"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/state"
)

// Request is what a rebalance of a topology starts from.
type Request struct {
	Topology *config.Topology
	// Live is the cluster read with weights (runner.Refresh).
	Live *state.Cluster
	// Drain are the nodes to empty, as Drained returns them.
	Drain map[string]bool
	// Options tune Solve; MaxWeight is set from MaxBytes.
	Options Options
	// MaxBytes caps the data moved; it needs weights in bytes. 0: no cap.
	MaxBytes int64
	// Now dates the check that nothing is pending; time.Now() when zero.
	Now time.Time
}

// Proposal is a computed rebalance: the input it came from, the result
// and, when shards move, the topology files rewritten to place them so.
type Proposal struct {
	Input  Input
	Result Result
	// Files maps each topology file the rewrite changes to its new
	// content; empty when no shard moves.
	Files map[string][]byte
}

// ErrMaxBytesNeedsBytes refuses a byte budget over weights that are plain
// numbers.
var ErrMaxBytesNeedsBytes = errors.New("--max-bytes needs weights in bytes, but the cluster's weight_sql returns plain numbers; use --max-moves, or make weight_sql return a size such as pg_size_pretty(...)")

// Propose checks that the cluster matches the files, builds the input,
// solves, and rewrites the files for the new placement, checking that they
// load back to exactly that placement.
func Propose(req Request) (Proposal, error) {
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	var p Proposal
	if err := CheckPending(req.Topology, req.Live, now); err != nil {
		return p, err
	}
	in, err := Build(req.Topology, req.Live, req.Drain)
	if err != nil {
		return p, err
	}
	p.Input = in
	opts := req.Options
	if req.MaxBytes > 0 {
		if !in.Bytes {
			return p, ErrMaxBytesNeedsBytes
		}
		opts.MaxWeight = float64(req.MaxBytes)
	}
	if p.Result, err = Solve(in.Nodes, in.Shards, opts); err != nil {
		return p, err
	}
	if len(p.Result.Moves) == 0 {
		return p, nil
	}
	files, err := config.RewritePlacement(req.Topology, p.Result.Placement)
	if err != nil {
		return p, err
	}
	if err := CheckRewrite(req.Topology, files, p.Result.Placement); err != nil {
		return p, err
	}
	p.Files = files
	return p, nil
}
