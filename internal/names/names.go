// Package names holds the naming conventions of the objects a move creates
// and leaves behind, pgms's own and pg-microsharding's, so that one place
// decides what cleanup recognises.
package names

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Move artifacts of pgms. The publication and subscription of a move share
// one name, so that an orphan found on one side names the other. The slot
// adds the source database's oid: slots live in one namespace for the
// whole server, so two databases on a server (two clusters, or two nodes
// of one) moving the same shard would otherwise take each other's slot.
// Replication object names are limited to 63 bytes; a schema name is too,
// so long schema names are the caller's concern (preflight refuses them).
const movePrefix = "pgms_move_"

// MovePublication is the publication on the source for a move of schema.
func MovePublication(schema string) string { return movePrefix + schema }

// MoveSlot is the logical replication slot on the source for a move, in
// the source database whose oid is database.
func MoveSlot(schema string, database uint32) string {
	return movePrefix + schema + "_" + strconv.FormatUint(uint64(database), 10)
}

// LegacyMoveSlot is the slot name of pgms versions before slots carried
// the database: still recognised, so that their leftovers are cleaned up.
func LegacyMoveSlot(schema string) string { return movePrefix + schema }

// SplitMoveSlot splits what follows "pgms_move_" in a slot's name into the
// schema and the database oid, when it ends with "_<digits>"; ok is false
// without such an ending (a legacy name, or a schema ending in digits
// after an underscore: the caller tries both readings against its naming).
func SplitMoveSlot(rest string) (schema string, database uint32, ok bool) {
	i := strings.LastIndexByte(rest, '_')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(rest[i+1:], 10, 32)
	if err != nil {
		return "", 0, false
	}
	return rest[:i], uint32(n), true
}

// MoveSubscription is the subscription on the destination for a move.
func MoveSubscription(schema string) string { return movePrefix + schema }

// Move artifacts of pg-microsharding, recognised by cleanup.
func ReferencePublication(schema string) string { return "pg_microsharding_move_" + schema + "_pub" }

// ReferenceSubscription names pg-microsharding's subscription and slot.
func ReferenceSubscription(schema string) string { return "pg_microsharding_move_" + schema + "_sub" }

// OldTimeLayout is the UTC timestamp suffix of a renamed move source.
const OldTimeLayout = "20060102150405"

// OldSchema is the name a move source is renamed to at cutover:
// <schema>old<UTC yyyymmddhhmmss>, as pg-microsharding does.
func OldSchema(schema string, at time.Time) string {
	return schema + "old" + at.UTC().Format(OldTimeLayout)
}

// NewSchema is the name of a copy that was not activated on the destination.
func NewSchema(schema string) string { return schema + "new" }

// leftoverSchema matches renamed sources and inactive copies of both tools:
// sh0001old20260101120000, sh0001old_1700000000, sh0001old, sh0001new.
var leftoverSchema = regexp.MustCompile(`^(.+?\d+)(old_\d+|old\d*|new)$`)

// Leftover describes a schema name that a move left behind.
type Leftover struct {
	Shard   string    // the shard schema it came from, e.g. sh0001
	Kind    string    // "old" (renamed source) or "new" (copy not activated)
	Renamed time.Time // when the source was renamed, if the name says
}

// ParseLeftoverSchema recognises a leftover schema name. The shard part must
// itself match isShard (the caller's naming), so that user schemas that
// happen to end in "new" are not taken for leftovers.
func ParseLeftoverSchema(name string, isShard func(string) bool) (Leftover, bool) {
	m := leftoverSchema.FindStringSubmatch(name)
	if m == nil || !isShard(m[1]) {
		return Leftover{}, false
	}
	l := Leftover{Shard: m[1], Kind: "old"}
	switch suffix := m[2]; {
	case suffix == "new":
		l.Kind = "new"
	case len(suffix) == len("old")+len(OldTimeLayout):
		if t, err := time.Parse(OldTimeLayout, suffix[3:]); err == nil {
			l.Renamed = t
		}
	case len(suffix) > len("old_"):
		// old_<unix seconds>
		var secs int64
		for _, c := range suffix[4:] {
			secs = secs*10 + int64(c-'0')
		}
		l.Renamed = time.Unix(secs, 0).UTC()
	}
	return l, true
}

var moveArtifact = regexp.MustCompile(`^(?:pgms_move_(.+)|pg_microsharding_move_(.+)_(?:pub|sub))$`)

// ParseMoveArtifact returns the schema a publication, slot or subscription
// name belongs to, for both tools' conventions.
func ParseMoveArtifact(name string) (schema string, ok bool) {
	m := moveArtifact.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	if m[1] != "" {
		return m[1], true
	}
	return m[2], true
}

// CopyMarkPrefix starts the comment that marks a destination schema as a
// copy made by a move in progress. The marker is set in the transaction
// that creates the copy and replaced by the source's own comment in the
// transaction that activates (or renames) it, so "this schema is an
// unfinished copy" is a fact any pgms can read on the node, not a memory.
const CopyMarkPrefix = "pgms: unfinished copy of "

// CopyMark is the comment of an unfinished copy of schema moved from the
// node named source.
func CopyMark(schema, source string) string {
	return CopyMarkPrefix + schema + " from " + source + "; do not use it: the move that made it will finish or remove it"
}

// IsCopyMark reports whether a schema comment marks an unfinished copy.
func IsCopyMark(comment string) bool { return strings.HasPrefix(comment, CopyMarkPrefix) }

// ParseCopyMark returns the source node named by a copy mark.
func ParseCopyMark(comment string) (source string, ok bool) {
	rest, ok := strings.CutPrefix(comment, CopyMarkPrefix)
	if !ok {
		return "", false
	}
	_, rest, found := strings.Cut(rest, " from ")
	if !found {
		return "", true
	}
	source, _, _ = strings.Cut(rest, "; ")
	return source, true
}

// WindowMarkPrefix starts the comment of a move source kept under its own
// name, inactive and fenced, while the move's rollback window is open: a
// reverse stream from the new home keeps it current, so that a rollback
// can switch back. Logical replication matches tables by schema-qualified
// name, which is why the source keeps its name until the window closes.
const WindowMarkPrefix = "pgms: rollback window of "

// windowTime is how the window mark writes its times: UTC, to the second.
const windowTime = "2006-01-02T15:04:05Z"

// Window is what a window mark says.
type Window struct {
	Schema string
	// To names the node the shard moved to, which serves it and streams
	// its changes back.
	To string
	// Since is the cutover's time; Until the end of the window.
	Since, Until time.Time
	// Comment is the schema's own comment, which the mark replaces until
	// the window closes (nil: none).
	Comment *string
}

// WindowMark is the comment of a move source whose rollback window is
// open.
func WindowMark(w Window) string {
	s := WindowMarkPrefix + w.Schema + " moved to " + w.To + " at " + w.Since.UTC().Format(windowTime) +
		", open until " + w.Until.UTC().Format(windowTime) +
		"; fenced against writes and kept current from there: pgms rollback switches back, pgms cleanup closes it once past"
	if w.Comment != nil {
		// The mark has no line break: the first one starts the own comment.
		s += "\n" + *w.Comment
	}
	return s
}

// ParseWindowMark reads a window mark; ok is false for any other comment.
func ParseWindowMark(comment string) (Window, bool) {
	rest, ok := strings.CutPrefix(comment, WindowMarkPrefix)
	if !ok {
		return Window{}, false
	}
	var w Window
	if mark, own, found := strings.Cut(rest, "\n"); found {
		rest, w.Comment = mark, &own
	}
	var since, until string
	w.Schema, rest, _ = strings.Cut(rest, " moved to ")
	// Node names may hold spaces: the last " at " before the times ends it.
	i := strings.LastIndex(rest, " at ")
	if i < 0 {
		return w, true
	}
	w.To, rest = rest[:i], rest[i+len(" at "):]
	since, rest, _ = strings.Cut(rest, ", open until ")
	until, _, _ = strings.Cut(rest, ";")
	w.Since, _ = time.Parse(windowTime, since)
	w.Until, _ = time.Parse(windowTime, until)
	return w, true
}

// IsWindowMark reports whether a schema comment marks an open window.
func IsWindowMark(comment string) bool { return strings.HasPrefix(comment, WindowMarkPrefix) }

// FenceTrigger is the trigger that refuses application writes to a
// source in its rollback window. It is an ordinary (ENABLE ORIGIN)
// trigger: the apply worker of the reverse stream runs with
// session_replication_role = replica, where such triggers do not fire.
const FenceTrigger = "pgms_rollback_fence"

// FenceFunction is the trigger function of FenceTrigger, in the library
// schema.
const FenceFunction = "pgms_rollback_fence_"

// StreamMarkPrefix starts the comment of the publication on the new home
// that streams a shard back to its old home during the rollback window;
// StreamMark adds the WAL position from which the stream carries the
// application's writes (the activation's), once known.
const StreamMarkPrefix = "pgms: rollback stream of "

// StreamMark is the comment of a reverse stream's publication.
func StreamMark(schema, to, from string) string {
	s := StreamMarkPrefix + schema + " to " + to
	if from != "" {
		s += " from " + from
	}
	return s
}

// ParseStreamMark returns the WAL position a stream mark names ("" while
// the stream is being set up); ok is false for any other comment.
func ParseStreamMark(comment string) (from string, ok bool) {
	rest, ok := strings.CutPrefix(comment, StreamMarkPrefix)
	if !ok {
		return "", false
	}
	if i := strings.LastIndex(rest, " from "); i >= 0 {
		return rest[i+len(" from "):], true
	}
	return "", true
}
