package executor

import "strings"

// The fast copy creates the destination's tables from pg_dump's pre-data
// section and, once the rows are in, runs the post-data section: indexes,
// constraints, triggers, rules, foreign keys. Building an index over
// finished data sorts once instead of inserting every row into every index,
// which is where most of a native copy's time goes. The index builds are
// independent of each other and run in parallel, one per connection (see
// backfillJob); the rest runs after them in the script's order (foreign
// keys need the unique indexes they reference, attachments need both
// indexes).

// postData is pg_dump's post-data section, split for running.
type postData struct {
	builds []ddlBuild
	// rest is every other statement in the script's order, the session
	// settings among them.
	rest []string
}

// ddlBuild is a statement that builds an index: CREATE INDEX, or a
// primary key, unique or exclusion constraint.
type ddlBuild struct {
	sql string
	// setup re-creates the session settings the script had made at that
	// point (search_path, default_tablespace …): a build may run on any
	// connection, in any order.
	setup string
	name  string // of the index or constraint, for progress
	table string // unquoted table name, to start the biggest tables first
}

// parsePostData splits a post-data script into statements and sorts them
// into index builds and the rest.
func parsePostData(script string) postData {
	var pd postData
	var keys []string
	settings := map[string]string{}
	for _, st := range splitSQL(stripRestrict(script)) {
		switch c := classifyDDL(st.tokens); c.kind {
		case stmtSetting:
			if _, ok := settings[c.key]; !ok {
				keys = append(keys, c.key)
			}
			settings[c.key] = st.sql
			pd.rest = append(pd.rest, st.sql)
		case stmtBuild:
			setup := make([]string, len(keys))
			for i, k := range keys {
				setup[i] = settings[k]
			}
			pd.builds = append(pd.builds, ddlBuild{sql: st.sql, setup: strings.Join(setup, ";\n"), name: c.name, table: c.table})
		default:
			pd.rest = append(pd.rest, st.sql)
		}
	}
	return pd
}

// abbreviate shortens a statement for an error message.
func abbreviate(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	if len(q) > 160 {
		q = q[:157] + "..."
	}
	return q
}

type stmtKind int

const (
	stmtOther stmtKind = iota
	stmtSetting
	stmtBuild
)

type ddlClass struct {
	kind  stmtKind
	key   string // session: the setting
	name  string // build: the index or constraint
	table string // build: the table
}

// classifyDDL recognises, from a statement's first tokens, the session
// settings and the index builds that pg_dump writes.
func classifyDDL(toks []sqlToken) ddlClass {
	word := func(i int, w string) bool {
		return i < len(toks) && toks[i].kind == tokWord && strings.EqualFold(toks[i].text, w)
	}
	switch {
	case word(0, "SET") || word(0, "RESET"):
		i := 1
		if word(i, "SESSION") || word(i, "LOCAL") {
			i++
		}
		if i < len(toks) {
			return ddlClass{kind: stmtSetting, key: strings.ToLower(toks[i].text)}
		}
	case word(0, "SELECT") && len(toks) >= 6 && word(1, "pg_catalog") && toks[2].text == "." && word(3, "set_config") && toks[4].text == "(" && toks[5].kind == tokString:
		return ddlClass{kind: stmtSetting, key: "set_config " + toks[5].text}
	case word(0, "CREATE") && (word(1, "INDEX") || word(1, "UNIQUE") && word(2, "INDEX")):
		i := 2
		if word(1, "UNIQUE") {
			i = 3
		}
		name := ""
		for ; i < len(toks) && !word(i, "ON"); i++ {
			if toks[i].kind == tokIdent || toks[i].kind == tokWord && !word(i, "CONCURRENTLY") && !word(i, "IF") && !word(i, "NOT") && !word(i, "EXISTS") {
				name = identText(toks[i])
			}
		}
		i++
		if word(i, "ONLY") {
			i++
		}
		if table, ok := qualifiedName(toks, i); ok && name != "" {
			return ddlClass{kind: stmtBuild, name: name, table: table}
		}
	case word(0, "ALTER") && word(1, "TABLE"):
		i := 2
		if word(i, "ONLY") {
			i++
		}
		table, ok := qualifiedName(toks, i)
		if !ok {
			break
		}
		for i < len(toks) && !word(i, "ADD") {
			i++
		}
		if word(i, "ADD") && word(i+1, "CONSTRAINT") && i+3 < len(toks) && (word(i+3, "PRIMARY") || word(i+3, "UNIQUE") || word(i+3, "EXCLUDE")) {
			return ddlClass{kind: stmtBuild, name: identText(toks[i+2]), table: table}
		}
	}
	return ddlClass{}
}

// qualifiedName reads [schema.]name at toks[i] and returns the name.
func qualifiedName(toks []sqlToken, i int) (string, bool) {
	isName := func(j int) bool { return j < len(toks) && (toks[j].kind == tokIdent || toks[j].kind == tokWord) }
	if !isName(i) {
		return "", false
	}
	if i+2 < len(toks) && toks[i+1].kind == tokPunct && toks[i+1].text == "." && isName(i+2) {
		return identText(toks[i+2]), true
	}
	return identText(toks[i]), true
}
