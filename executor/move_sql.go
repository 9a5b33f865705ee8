package executor

import "strings"

// The SQL splitting the DDL phases need: pg_dump's scripts are cut into
// statements, and each statement's first tokens tell its kind (see
// classifyDDL), without a parser of the whole grammar.

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
