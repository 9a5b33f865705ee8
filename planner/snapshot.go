package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/pgms-dev/pgms/state"
)

// Snapshot describes the live state a plan depends on as sorted lines, one
// fact each: the nodes, their library, every shard schema with its active
// flag, every leftover. Sizes, weights and counters are left out: they move
// all the time and a plan does not depend on them. Two snapshots differ
// exactly where the cluster changed in a way that matters, so a saved plan
// can say what changed.
func Snapshot(live *state.Cluster) []string {
	var lines []string
	for _, n := range live.Nodes {
		if n.Err != nil {
			lines = append(lines, fmt.Sprintf("node %s: unreachable", n.Name))
			continue
		}
		role := "primary"
		if n.Standby {
			role = "standby"
		}
		lib := "no library"
		if n.Library.Installed {
			lib = fmt.Sprintf("library version %d", n.Library.Version)
		}
		lines = append(lines, fmt.Sprintf("node %s: %s at %s, %s", n.Name, role, n.Addr, lib))
		for _, s := range n.Shards {
			flag := "inactive"
			if s.Active {
				flag = "active"
			}
			lines = append(lines, fmt.Sprintf("node %s: shard %s %s", n.Name, s.Schema, flag))
		}
		for _, l := range n.Leftovers {
			lines = append(lines, fmt.Sprintf("node %s: %s %s", n.Name, objectKind(l.Kind), l.Name))
		}
	}
	sort.Strings(lines)
	return lines
}

// Fingerprint is the SHA-256 of a snapshot, in hex. An empty cluster has
// one too.
func Fingerprint(snapshot []string) string {
	h := sha256.New()
	for _, l := range snapshot {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SnapshotDiff lists what changed from old to new: lines only in old
// prefixed with "-", lines only in new with "+".
func SnapshotDiff(old, new []string) []string {
	inOld := map[string]bool{}
	for _, l := range old {
		inOld[l] = true
	}
	inNew := map[string]bool{}
	for _, l := range new {
		inNew[l] = true
	}
	var out []string
	for _, l := range old {
		if !inNew[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range new {
		if !inOld[l] {
			out = append(out, "+ "+l)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return strings.TrimLeft(out[i], "-+ ") < strings.TrimLeft(out[j], "-+ ") })
	return out
}
