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

// identText is the name a token denotes: unquoted words fold to lower case.
func identText(t sqlToken) string {
	if t.kind == tokWord {
		return strings.ToLower(t.text)
	}
	return t.text
}

type tokKind int

const (
	tokWord   tokKind = iota // keyword, unquoted identifier or number, as written
	tokIdent                 // quoted identifier, unquoted
	tokString                // string constant as written, quotes included
	tokPunct                 // one other character
)

type sqlToken struct {
	kind tokKind
	text string
	end  int // offset after the token
}

// sqlStatement is one statement of a script and its first tokens.
type sqlStatement struct {
	sql    string
	tokens []sqlToken
}

// splitSQL splits a script at the semicolons that end statements: not
// those in strings, quoted identifiers, dollar quotes, comments or
// parentheses (a rule's actions). It keeps the first tokens of each
// statement for classifyDDL.
func splitSQL(script string) []sqlStatement {
	const keep = 16
	var out []sqlStatement
	start, depth := -1, 0
	var toks []sqlToken
	scanSQL(script, func(t sqlToken, at int) {
		if start < 0 {
			start = at
		}
		if t.kind == tokPunct {
			switch t.text {
			case "(":
				depth++
			case ")":
				depth = max(depth-1, 0)
			case ";":
				if depth == 0 {
					if len(toks) > 0 {
						out = append(out, sqlStatement{sql: script[start:at], tokens: toks})
					}
					start, toks = -1, nil
					return
				}
			}
		}
		if len(toks) < keep {
			toks = append(toks, t)
		}
	})
	if start >= 0 && len(toks) > 0 {
		out = append(out, sqlStatement{sql: strings.TrimSpace(script[start:]), tokens: toks})
	}
	return out
}

// scanSQL calls fn with every token of s and the offset it starts at,
// skipping white space and comments. Strings follow
// standard_conforming_strings = on, as pg_dump sets it.
func scanSQL(s string, fn func(t sqlToken, at int)) {
	n := len(s)
	isIdentStart := func(c byte) bool { return c == '_' || c >= 0x80 || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c == '$' || '0' <= c && c <= '9' }
	// quoted returns the offset after a quoted run starting at i (the
	// opening quote); a doubled quote continues it, and so does a
	// backslash-escaped character when backslash is set.
	quoted := func(i int, q byte, backslash bool) int {
		for j := i + 1; j < n; j++ {
			switch {
			case backslash && s[j] == '\\':
				j++
			case s[j] == q && j+1 < n && s[j+1] == q:
				j++
			case s[j] == q:
				return j + 1
			}
		}
		return n
	}
	for i := 0; i < n; {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < n && s[i+1] == '-':
			for i < n && s[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < n && s[i+1] == '*':
			depth := 0
			for i < n {
				if s[i] == '/' && i+1 < n && s[i+1] == '*' {
					depth++
					i += 2
				} else if s[i] == '*' && i+1 < n && s[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		case c == '\'':
			end := quoted(i, '\'', false)
			fn(sqlToken{kind: tokString, text: s[i:end], end: end}, i)
			i = end
		case (c == 'E' || c == 'e') && i+1 < n && s[i+1] == '\'':
			end := quoted(i+1, '\'', true)
			fn(sqlToken{kind: tokString, text: s[i:end], end: end}, i)
			i = end
		case c == '"':
			end := quoted(i, '"', false)
			text := s[i+1 : max(end-1, i+1)]
			fn(sqlToken{kind: tokIdent, text: strings.ReplaceAll(text, `""`, `"`), end: end}, i)
			i = end
		case c == '$':
			j := i + 1
			for j < n && isIdent(s[j]) && s[j] != '$' && !(j == i+1 && '0' <= s[j] && s[j] <= '9') {
				j++
			}
			if j < n && s[j] == '$' {
				tag := s[i : j+1]
				end := n
				if k := strings.Index(s[j+1:], tag); k >= 0 {
					end = j + 1 + k + len(tag)
				}
				fn(sqlToken{kind: tokString, text: s[i:end], end: end}, i)
				i = end
				continue
			}
			fn(sqlToken{kind: tokPunct, text: "$", end: i + 1}, i)
			i++
		case isIdent(c):
			j := i + 1
			for j < n && isIdent(s[j]) {
				j++
			}
			fn(sqlToken{kind: tokWord, text: s[i:j], end: j}, i)
			i = j
		default:
			fn(sqlToken{kind: tokPunct, text: s[i : i+1], end: i + 1}, i)
			i++
		}
	}
}
