package planner

import (
	"sort"
	"strings"
)

// SnapshotDiff lists what changed from one live snapshot
// (state.Cluster.Snapshot) to another: lines only in old
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
