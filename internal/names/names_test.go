package names

import (
	"regexp"
	"testing"
	"time"
)

func TestParseLeftoverSchema(t *testing.T) {
	isShard := regexp.MustCompile(`^sh\d{4}$`).MatchString
	tests := []struct {
		in      string
		ok      bool
		shard   string
		kind    string
		renamed time.Time
	}{
		{"sh0001old20260102030405", true, "sh0001", "old", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"sh0001old_1700000000", true, "sh0001", "old", time.Unix(1700000000, 0).UTC()},
		{"sh0001old", true, "sh0001", "old", time.Time{}},
		{"sh0042new", true, "sh0042", "new", time.Time{}},
		{"sh0001", false, "", "", time.Time{}},
		{"renew", false, "", "", time.Time{}},
		{"public", false, "", "", time.Time{}},
	}
	for _, tt := range tests {
		l, ok := ParseLeftoverSchema(tt.in, isShard)
		if ok != tt.ok || l.Shard != tt.shard || l.Kind != tt.kind || !l.Renamed.Equal(tt.renamed) {
			t.Errorf("ParseLeftoverSchema(%q) = %+v, %v", tt.in, l, ok)
		}
	}
	if got := OldSchema("sh0007", time.Date(2026, 11, 25, 12, 0, 1, 0, time.UTC)); got != "sh0007old20261125120001" {
		t.Errorf("OldSchema = %s", got)
	}
}

func TestParseMoveArtifact(t *testing.T) {
	tests := []struct{ in, schema string }{
		{LegacyMoveSlot("sh0001"), "sh0001"},
		{MoveSlot("sh0001", 16384), "sh0001_16384"}, // split by SplitMoveSlot
		{ReferencePublication("sh0002"), "sh0002"},
		{ReferenceSubscription("sh0003"), "sh0003"},
		{"other_slot", ""},
	}
	for _, tt := range tests {
		got, ok := ParseMoveArtifact(tt.in)
		if got != tt.schema || ok != (tt.schema != "") {
			t.Errorf("ParseMoveArtifact(%q) = %q, %v", tt.in, got, ok)
		}
	}
}

func TestSplitMoveSlot(t *testing.T) {
	tests := []struct {
		rest   string
		schema string
		db     uint32
		ok     bool
	}{
		{"sh0001_16384", "sh0001", 16384, true},
		{"sh0001", "", 0, false},
		{"my_sh_0001_5", "my_sh_0001", 5, true},
		{"sh0001_x", "", 0, false},
		{"_12", "", 0, false},
	}
	for _, tt := range tests {
		schema, db, ok := SplitMoveSlot(tt.rest)
		if schema != tt.schema || db != tt.db || ok != tt.ok {
			t.Errorf("SplitMoveSlot(%q) = %q, %d, %v", tt.rest, schema, db, ok)
		}
	}
}

func TestWindowMark(t *testing.T) {
	since := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	own := "orders of\nthe east; region 4"
	tests := []Window{
		{Schema: "sh0001", To: "b", Since: since, Until: since.Add(time.Hour)},
		{Schema: "sh0002", To: "node at the end", Since: since, Until: since.Add(90 * time.Minute), Comment: &own},
	}
	for _, w := range tests {
		got, ok := ParseWindowMark(WindowMark(w))
		if !ok || got.Schema != w.Schema || got.To != w.To || !got.Since.Equal(w.Since) || !got.Until.Equal(w.Until) ||
			(got.Comment == nil) != (w.Comment == nil) || got.Comment != nil && *got.Comment != *w.Comment {
			t.Errorf("ParseWindowMark(WindowMark(%+v)) = %+v, %v", w, got, ok)
		}
	}
	if _, ok := ParseWindowMark(CopyMark("sh0001", "a")); ok {
		t.Error("a copy mark read as a window mark")
	}
	for _, tt := range []struct{ mark, from string }{
		{StreamMark("sh0001", "a", ""), ""},
		{StreamMark("sh0001", "a", "0/16B3748"), "0/16B3748"},
	} {
		if from, ok := ParseStreamMark(tt.mark); !ok || from != tt.from {
			t.Errorf("ParseStreamMark(%q) = %q, %v", tt.mark, from, ok)
		}
	}
}
