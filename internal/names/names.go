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
