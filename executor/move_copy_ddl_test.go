package executor

import (
	"strings"
	"testing"
)

// postDataScript is shaped like pg_dump's post-data output, with what
// could mislead a splitter: semicolons and newlines in names, predicates
// and string constants, dollar quotes, nested comments, a rule with two
// actions, a tablespace change.
const postDataScript = `--
-- PostgreSQL database dump
--

\restrict K3y

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);

SET default_tablespace = '';

--
-- Name: Odd "T" Odd "T"_pkey; Type: CONSTRAINT; Schema: sh1; Owner: postgres
--

ALTER TABLE ONLY sh1."Odd ""T"""
    ADD CONSTRAINT "Odd ""T""_pkey" PRIMARY KEY (id);

--
-- Name: child chk; Type: CHECK CONSTRAINT; Schema: sh1; Owner: postgres
--

ALTER TABLE sh1.child
    ADD CONSTRAINT chk CHECK ((id > 0)) NOT VALID;

--
-- Name: Idx; Type: INDEX; Type: INDEX; Schema: sh1; Owner: postgres
--

CREATE UNIQUE INDEX "Idx; Type: INDEX" ON sh1."Odd ""T""" USING btree ("Mixed Col") WHERE ("Mixed Col" <> 'a;
b'::text);

/* a /* nested */ comment; with a semicolon */
CREATE INDEX events_what ON ONLY sh1.events USING btree (what);

SET default_tablespace = fast;

CREATE INDEX gidx ON sh1."Odd ""T""" USING btree (g) WHERE (note <> E'it\'s;');

ALTER TABLE sh1."Odd ""T""" CLUSTER ON gidx;

COMMENT ON INDEX sh1.gidx IS 'one; two';

ALTER INDEX sh1.events_what ATTACH PARTITION sh1."events 2025_what_idx";

CREATE RULE r AS ON INSERT TO sh1.child DO ALSO (NOTIFY a; NOTIFY b);

CREATE TRIGGER t1 BEFORE INSERT ON sh1.child FOR EACH ROW EXECUTE FUNCTION sh1.trg('$x$;');

ALTER TABLE ONLY sh1.child
    ADD CONSTRAINT child_parent_fkey FOREIGN KEY (parent) REFERENCES sh1."Odd ""T"""(id);

SELECT $tag$ ; $tag$;

\unrestrict K3y
`

func TestParsePostData(t *testing.T) {
	pd := parsePostData(postDataScript)
	type build struct{ name, table, tablespace string }
	want := []build{
		{`Odd "T"_pkey`, `Odd "T"`, "''"},
		{"Idx; Type: INDEX", `Odd "T"`, "''"},
		{"events_what", "events", "''"},
		{"gidx", `Odd "T"`, "fast"},
	}
	if len(pd.builds) != len(want) {
		t.Fatalf("%d builds, want %d: %+v", len(pd.builds), len(want), pd.builds)
	}
	for i, w := range want {
		b := pd.builds[i]
		if b.name != w.name || b.table != w.table {
			t.Errorf("build %d: %q on %q, want %q on %q", i, b.name, b.table, w.name, w.table)
		}
		// The setup replays the latest value of every setting, in the
		// order they first appeared.
		wantSetup := "SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\nSELECT pg_catalog.set_config('search_path', '', false);\nSET default_tablespace = " + w.tablespace
		if b.setup != wantSetup {
			t.Errorf("build %d setup:\n%s\nwant:\n%s", i, b.setup, wantSetup)
		}
	}
	if !strings.Contains(pd.builds[1].sql, "'a;\nb'::text)") {
		t.Errorf("predicate cut: %q", pd.builds[1].sql)
	}
	wantRest := []string{
		"SET statement_timeout = 0",
		"SET client_encoding = 'UTF8'",
		"SELECT pg_catalog.set_config('search_path', '', false)",
		"SET default_tablespace = ''",
		"ALTER TABLE sh1.child\n    ADD CONSTRAINT chk CHECK ((id > 0)) NOT VALID",
		"SET default_tablespace = fast",
		`ALTER TABLE sh1."Odd ""T""" CLUSTER ON gidx`,
		"COMMENT ON INDEX sh1.gidx IS 'one; two'",
		`ALTER INDEX sh1.events_what ATTACH PARTITION sh1."events 2025_what_idx"`,
		"CREATE RULE r AS ON INSERT TO sh1.child DO ALSO (NOTIFY a; NOTIFY b)",
		"CREATE TRIGGER t1 BEFORE INSERT ON sh1.child FOR EACH ROW EXECUTE FUNCTION sh1.trg('$x$;')",
		"ALTER TABLE ONLY sh1.child\n    ADD CONSTRAINT child_parent_fkey FOREIGN KEY (parent) REFERENCES sh1.\"Odd \"\"T\"\"\"(id)",
		"SELECT $tag$ ; $tag$",
	}
	if got := strings.Join(pd.rest, "\n--\n"); got != strings.Join(wantRest, "\n--\n") {
		t.Errorf("rest:\n%s\nwant:\n%s", got, strings.Join(wantRest, "\n--\n"))
	}
}

func TestSplitTable(t *testing.T) {
	tc := &tableCopy{table: table{Name: "t", Bytes: 10 << 20}, columns: []string{`"a"`, `"B c"`}, binary: true}
	units := splitTable(tc, 4<<20, 8192, 15)
	if len(units) != 3 || tc.pending.Load() != 3 {
		t.Fatalf("%d units, %d pending", len(units), tc.pending.Load())
	}
	m := &move{schema: "sh1"}
	for i, want := range []string{
		`COPY (SELECT "a", "B c" FROM "sh1"."t" WHERE ctid >= '(0,0)'::tid AND ctid < '(427,0)'::tid) TO STDOUT (FORMAT binary)`,
		`COPY (SELECT "a", "B c" FROM "sh1"."t" WHERE ctid >= '(427,0)'::tid AND ctid < '(854,0)'::tid) TO STDOUT (FORMAT binary)`,
		`COPY (SELECT "a", "B c" FROM "sh1"."t" WHERE ctid >= '(854,0)'::tid) TO STDOUT (FORMAT binary)`,
	} {
		if got := m.copyOut(units[i]); got != want {
			t.Errorf("unit %d: %s\nwant %s", i, got, want)
		}
	}
	if got, want := m.copyIn(units[0]), `COPY "sh1"."t" ("a", "B c") FROM STDIN (FORMAT binary)`; got != want {
		t.Errorf("copy in: %s", got)
	}
	// Small tables, and sources without page-range scans, go whole and
	// are written frozen.
	for _, major := range []int{13, 15} {
		small := &tableCopy{table: table{Name: "t", Bytes: 100}, columns: []string{`"a"`}}
		if major == 13 {
			small.Bytes = 10 << 20
		}
		units := splitTable(small, 4<<20, 8192, major)
		if len(units) != 1 || !units[0].whole {
			t.Fatalf("major %d: %+v", major, units)
		}
		if got, want := m.copyOut(units[0]), `COPY "sh1"."t" ("a") TO STDOUT`; got != want {
			t.Errorf("copy out: %s", got)
		}
		if got, want := m.copyIn(units[0]), `COPY "sh1"."t" ("a") FROM STDIN (FREEZE)`; got != want {
			t.Errorf("copy in: %s", got)
		}
	}
}
