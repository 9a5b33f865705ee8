package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/state"
)

// ErrNoWindow: the shard has no open rollback window.
var ErrNoWindow = errors.New("no open rollback window")

// WindowAt is a shard's rollback window as found on the nodes: Old holds
// the fenced source, Home is the node the shard moved to.
type WindowAt struct {
	Shard     int
	Schema    string
	Old, Home state.NodeSpec
	Window    names.Window
}

// FindWindow finds the rollback window of shard among the nodes read into
// live (whose DSNs specs give): the node whose copy carries the window
// mark, and the node the mark names (by name or address), which serves
// the shard or did until a rollback committed.
func FindWindow(live *state.Cluster, specs []state.NodeSpec, shard int) (WindowAt, error) {
	dsnOf := map[string]string{}
	for _, s := range specs {
		dsnOf[s.Name] = s.DSN
	}
	var w WindowAt
	var unread []string
	for _, n := range live.Nodes {
		if n.Err != nil {
			unread = append(unread, n.Err.Error())
			continue
		}
		if s := n.Shard(shard); s != nil && s.Window != nil {
			if w.Old.Name != "" {
				return w, fmt.Errorf("shard %d is in a rollback window on both %s and %s: check both nodes", shard, w.Old.Name, n.Name)
			}
			w.Shard, w.Schema, w.Window = shard, s.Schema, *s.Window
			w.Old = state.NodeSpec{Name: n.Name, DSN: dsnOf[n.Name]}
		}
	}
	if w.Old.Name == "" {
		if done, ok := finishedRollback(live, dsnOf, shard); ok {
			return done, nil
		}
		if len(unread) > 0 {
			return w, fmt.Errorf("no rollback window of shard %d on the nodes read, and some could not be read: %v", shard, unread)
		}
		served := ""
		for _, n := range live.Nodes {
			if s := n.Shard(shard); s != nil && s.Active {
				served = "; " + n.Name + " serves it"
			}
		}
		return w, fmt.Errorf("%w: shard %d has none on any node%s (windows open when a move runs with --rollback-window or rollback_window, and close when they end, are closed or a rollback finishes)", ErrNoWindow, shard, served)
	}
	for _, n := range live.Nodes {
		if n.Name == w.Window.To || n.Addr == w.Window.To {
			w.Home = state.NodeSpec{Name: w.Window.To, DSN: dsnOf[n.Name]}
		}
	}
	if w.Home.DSN == "" {
		return w, fmt.Errorf("shard %d moved from %s to %s, which is not among the nodes given: pass its DSN too", shard, w.Old.Name, w.Window.To)
	}
	return w, nil
}

// finishedRollback recognises a rollback that switched back but stopped
// before dropping its stream: the old home serves the shard and still
// subscribes to it, and the publication is on the node it came back from.
// Running the rollback again then only drops what is left.
func finishedRollback(live *state.Cluster, dsnOf map[string]string, shard int) (WindowAt, bool) {
	var w WindowAt
	for _, n := range live.Nodes {
		s := n.Shard(shard)
		for _, l := range n.Leftovers {
			if l.Shard != shard || l.Tool != state.ToolPGMS {
				continue
			}
			switch {
			case l.Kind == state.LeftoverSubscription && s != nil && s.Active:
				w.Old, w.Schema = state.NodeSpec{Name: n.Name, DSN: dsnOf[n.Name]}, s.Schema
			case l.Kind == state.LeftoverPublication && (s == nil || !s.Active):
				w.Home = state.NodeSpec{Name: n.Name, DSN: dsnOf[n.Name]}
			}
		}
	}
	w.Shard = shard
	return w, w.Old.DSN != "" && w.Home.DSN != "" && w.Old.Name != w.Home.Name
}

// Rollback switches shard back to its old home (or, with close, ends its
// window now) as its own run, under the run lock of req.StateDSN, like
// Move. The spec's endpoints come from the window found: From is the
// node serving the shard, To the old home.
func Rollback(ctx context.Context, w WindowAt, close bool, req MoveRequest) (executor.MoveResult, string, error) {
	spec := req.Spec
	spec.Shard, spec.Schema, spec.Activate, spec.Rollback = w.Shard, w.Schema, true, true
	spec.From = executor.Endpoint{Name: w.Home.Name, DSN: w.Home.DSN}
	spec.To = executor.Endpoint{Name: w.Old.Name, DSN: w.Old.DSN}
	req.Spec = spec
	if req.StateDSN == "" {
		req.StateDSN = w.Home.DSN
	}
	if !close {
		res, err := Move(ctx, req)
		return res, "", err
	}
	var renamed string
	err := asRun(ctx, req, func(ctx context.Context, journal *state.Journal) error {
		var err error
		renamed, err = executor.CloseWindow(ctx, spec, journal, req.Reporter)
		return err
	})
	return executor.MoveResult{}, renamed, err
}

// Windows lists the rollback windows open in live, as plans show them;
// now decides which have ended.
func Windows(live *state.Cluster, now time.Time) []planner.Window {
	var out []planner.Window
	for _, n := range live.Nodes {
		for _, s := range n.Shards {
			if s.Window == nil || s.Active {
				continue
			}
			w := planner.Window{Shard: s.Shard, Schema: s.Schema, Node: n.Name, To: s.Window.To, Since: s.Window.Since, Until: s.Window.Until,
				Expired: !now.Before(s.Window.Until)}
			for _, home := range live.Nodes {
				if home.Name != w.To && home.Addr != w.To {
					continue
				}
				for _, l := range home.Leftovers {
					if l.Shard == s.Shard && l.Kind == state.LeftoverSlot {
						w.RetainedBytes = l.RetainedBytes
					}
				}
			}
			out = append(out, w)
		}
	}
	return out
}
