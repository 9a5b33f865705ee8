package executor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgms-dev/pgms/internal/fault"
)

func TestStripRestrict(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"none", "CREATE TABLE t ();\n", "CREATE TABLE t ();\n"},
		{"pair", "--\n\\restrict AbC123\n\nSET x = 1;\n\\unrestrict AbC123\n", "--\n\nSET x = 1;\n"},
		{"crlf", "\\restrict K9\r\nSELECT 1;\r\n\\unrestrict K9\r\n", "SELECT 1;\r\n"},
		{"other key kept", "\\restrict K1\nCREATE FUNCTION f() RETURNS text AS $$\n\\restrict K2\n$$ LANGUAGE sql;\n\\unrestrict K1\n",
			"CREATE FUNCTION f() RETURNS text AS $$\n\\restrict K2\n$$ LANGUAGE sql;\n"},
		{"not at line start", "SELECT '\\restrict K1';\n", "SELECT '\\restrict K1';\n"},
	} {
		if got := stripRestrict(tc.in); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestDropNewerSettings(t *testing.T) {
	dump := "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\nSET lock_timeout = 0;\n" +
		"SET transaction_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n" +
		"CREATE FUNCTION s.f() RETURNS void LANGUAGE sql AS $$\nSET transaction_timeout = 0;\n$$;\n"
	without := strings.Replace(dump, "SET transaction_timeout = 0;\n", "", 1)
	for major, want := range map[int]string{13: without, 16: without, 17: dump, 18: dump} {
		if got := dropNewerSettings(dump, major); got != want {
			t.Errorf("destination %d: got %q, want %q", major, got, want)
		}
	}
}

func TestQuoteLiteral(t *testing.T) {
	for in, want := range map[string]string{
		"plain":      "'plain'",
		"it's":       "'it''s'",
		`back\slash`: `E'back\\slash'`,
		`'\`:         `E'''\\'`,
	} {
		if got := quoteLiteral(in); got != want {
			t.Errorf("quoteLiteral(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestPublisherConninfo(t *testing.T) {
	t.Setenv("PGPASSWORD", "from-env")
	t.Setenv("PGUSER", "envuser")
	for _, tc := range []struct {
		dsn, publisher string
		want           []string
		not            []string
	}{
		{dsn: "postgres://app:pw@db1:5433/app?sslmode=require", want: []string{"app:pw@db1:5433/app", "sslmode=require"}},
		{dsn: "postgres://app@db1/app", want: []string{"app:from-env@db1/app"}},
		{dsn: "postgres://db1/app", want: []string{"envuser:from-env@db1/app"}},
		{dsn: "host=db1 dbname=app user=app", want: []string{"host=db1", "password='from-env'"}},
		{dsn: "postgres://app:pw@db1/app", publisher: "host=internal dbname=app", want: []string{"host=internal dbname=app"}, not: []string{"pw"}},
	} {
		m := &move{spec: MoveSpec{From: Endpoint{DSN: tc.dsn, PublisherDSN: tc.publisher}}}
		got, err := m.publisherConninfo()
		if err != nil {
			t.Fatalf("%s: %v", tc.dsn, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tc.dsn, got, w)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(got, w) {
				t.Errorf("%s: %q has %q", tc.dsn, got, w)
			}
		}
	}
}

func TestBackoff(t *testing.T) {
	for attempt := 1; attempt <= 30; attempt++ {
		d := backoff(attempt)
		if d <= 0 || d > 7500*time.Millisecond {
			t.Errorf("backoff(%d) = %v", attempt, d)
		}
	}
}

// TestMoveInterruptedInCutover cancels while the source's tables are
// locked: the attempt rolls back and the move is undone.
func TestMoveInterruptedInCutover(t *testing.T) {
	c := newCluster(t)
	schema := c.shard(15, writerTable)
	w := c.startWriter(schema, 3*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hooked := fault.WithHook(ctx, func(at string) error {
		if at == "move.cutover.locked" {
			cancel()
		}
		return nil
	})
	_, err := Move(hooked, c.spec(15, true), nil, nil)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v", err)
	}
	checkWriter(t, w, c.a)
	if got := c.active(c.a); len(got) != 1 || got[0] != schema {
		t.Errorf("source serves %v", got)
	}
	if got := c.schemas(c.b, "sh%"); len(got) != 0 {
		t.Errorf("destination keeps %v", got)
	}
	c.noArtifacts()
}
