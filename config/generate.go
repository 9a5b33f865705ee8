package config

import (
	"bytes"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/pgms-dev/pgms/internal/units"
)

// Generate writes t as the content of one topology file in canonical
// form: a cluster block only when a setting differs from its default,
// nodes by name, then shards blocks by number with contiguous ranges of the
// same node, active and pinned flags merged (shard 0 keeps a block of its
// own), then removed blocks. A node's DSNExpr, when set, is written instead
// of its DSN: callers put env("PGMS_DSN_A") there to keep secrets out of
// the file.
func Generate(t *Topology) []byte {
	var out bytes.Buffer
	f := hclwrite.NewEmptyFile()
	root := f.Body()
	if cb := clusterBlock(t); cb != nil {
		root.AppendBlock(cb)
		root.AppendNewline()
	}
	nodes := append([]Node(nil), t.Nodes...)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	for _, n := range nodes {
		b := root.AppendNewBlock("node", []string{n.Name}).Body()
		if tokens := exprTokens(n.DSNExpr); tokens != nil {
			b.SetAttributeRaw("dsn", tokens)
		} else {
			b.SetAttributeValue("dsn", cty.StringVal(n.DSN))
		}
		if tokens := exprTokens(n.PublisherDSNExpr); tokens != nil {
			b.SetAttributeRaw("publisher_dsn", tokens)
		} else if n.PublisherDSN != "" {
			b.SetAttributeValue("publisher_dsn", cty.StringVal(n.PublisherDSN))
		}
		if n.Drain {
			b.SetAttributeValue("drain", cty.True)
		}
		if n.MaxConcurrentMoves != 0 && n.MaxConcurrentMoves != DefaultMaxConcurrentMoves {
			b.SetAttributeValue("max_concurrent_moves", cty.NumberIntVal(int64(n.MaxConcurrentMoves)))
		}
		if n.Capacity != 0 && n.Capacity != DefaultCapacity {
			b.SetAttributeValue("capacity", cty.NumberFloatVal(n.Capacity))
		}
		root.AppendNewline()
	}
	out.Write(f.Bytes())
	for _, r := range mergeRanges(t.Shards) {
		out.WriteString(shardsBlockText(r, true, ""))
		out.WriteByte('\n')
	}
	if len(t.Removed) > 0 {
		out.WriteByte('\n')
		for _, r := range mergeRanges(t.Removed) {
			out.WriteString(`removed { shards = "` + r.String() + "\" }\n")
		}
	}
	b := hclwrite.Format(bytes.TrimRight(out.Bytes(), "\n"))
	return append(b, '\n')
}

func clusterBlock(t *Topology) *hclwrite.Block {
	c, def := t.Cluster, defaultCluster()
	block := hclwrite.NewBlock("cluster", nil)
	b := block.Body()
	str := func(name, v, def string) {
		if v != "" && v != def {
			b.SetAttributeValue(name, cty.StringVal(v))
		}
	}
	str("schema_prefix", c.SchemaPrefix, def.SchemaPrefix)
	if c.SchemaDigits != 0 && c.SchemaDigits != def.SchemaDigits {
		b.SetAttributeValue("schema_digits", cty.NumberIntVal(int64(c.SchemaDigits)))
	}
	switch argv := c.MigrateCommand; {
	case len(argv) == 3 && argv[0] == "/bin/sh" && argv[1] == "-c":
		b.SetAttributeValue("migrate_command", cty.StringVal(argv[2]))
	case len(argv) > 0:
		vals := make([]cty.Value, len(argv))
		for i, a := range argv {
			vals[i] = cty.StringVal(a)
		}
		b.SetAttributeValue("migrate_command", cty.ListVal(vals))
	}
	str("weight_sql", c.WeightSQL, "")
	str("deactivate_sql", c.DeactivateSQL, "")
	str("verify", c.Verify, "")
	switch {
	case c.KeepCopy < 0:
		b.SetAttributeValue("keep_copy", cty.StringVal("0"))
	case c.KeepCopy > 0:
		b.SetAttributeValue("keep_copy", cty.StringVal(units.FormatBytes(float64(c.KeepCopy))))
	}
	if c.RollbackWindow > 0 {
		b.SetAttributeValue("rollback_window", cty.StringVal(units.FormatDuration(c.RollbackWindow)))
	}
	if c.CleanupAfter != 0 && c.CleanupAfter != def.CleanupAfter {
		b.SetAttributeValue("cleanup_after", cty.StringVal(units.FormatDuration(c.CleanupAfter)))
	}
	str("library_schema", c.LibrarySchema, def.LibrarySchema)
	first := ""
	for _, n := range t.Nodes {
		if first == "" || n.Name < first {
			first = n.Name
		}
	}
	str("state_node", c.StateNode, first)
	if len(b.Attributes()) == 0 {
		return nil
	}
	return block
}

// exprTokens turns expression source text into tokens; nil when src is
// empty or not an expression.
func exprTokens(src string) hclwrite.Tokens {
	if strings.TrimSpace(src) == "" {
		return nil
	}
	if _, diags := hclsyntax.ParseExpression([]byte(src), "", hcl.InitialPos); diags.HasErrors() {
		return nil
	}
	f, diags := hclwrite.ParseConfig([]byte("x = "+src+"\n"), "", hcl.InitialPos)
	if diags.HasErrors() {
		return nil
	}
	return f.Body().GetAttribute("x").Expr().BuildTokens(nil)
}

// mergeRanges merges contiguous ranges of the same node, active and pinned
// flags; shard 0 stays alone. The input need not be sorted.
func mergeRanges(in []ShardRange) []ShardRange {
	rs := append([]ShardRange(nil), in...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].From < rs[j].From })
	var out []ShardRange
	for _, r := range rs {
		if k := len(out) - 1; k >= 0 && mergeable(out[k], r) {
			out[k].To = r.To
			continue
		}
		out = append(out, r)
	}
	return out
}

// mergeable reports whether b continues a in one block.
func mergeable(a, b ShardRange) bool {
	return a.To+1 == b.From && a.From != 0 &&
		a.Node == b.Node && a.Active == b.Active && a.Pinned == b.Pinned
}

// shardsBlockText writes a shards block. A block with the node alone fits
// on one line when oneLine allows; others take one attribute a line.
// Lines after the first are indented with indent.
func shardsBlockText(r ShardRange, oneLine bool, indent string) string {
	label := quoted(r.String())
	if oneLine && r.Active && !r.Pinned {
		return "shards " + label + " { node = " + quoted(r.Node) + " }"
	}
	f := hclwrite.NewEmptyFile()
	b := f.Body().AppendNewBlock("shards", []string{r.String()}).Body()
	b.SetAttributeValue("node", cty.StringVal(r.Node))
	if !r.Active {
		b.SetAttributeValue("active", cty.False)
	}
	if r.Pinned {
		b.SetAttributeValue("pinned", cty.True)
	}
	text := strings.TrimRight(string(hclwrite.Format(f.Bytes())), "\n")
	return strings.ReplaceAll(text, "\n", "\n"+indent)
}

// quoted writes s as an HCL string literal.
func quoted(s string) string {
	return string(hclwrite.TokensForValue(cty.StringVal(s)).Bytes())
}

// Format returns src in canonical form: hclwrite's layout, and shard range
// labels written the canonical way ("0007" becomes "7", "3 - 5" becomes
// "3-5", "5-5" becomes "5"). Malformed labels are left for Load to report.
// A file with syntax errors is returned as nil with the diagnostics.
func Format(src []byte, filename string) ([]byte, hcl.Diagnostics) {
	if _, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos); diags.HasErrors() {
		return nil, diags
	}
	f, diags := hclwrite.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	for _, b := range f.Body().Blocks() {
		switch {
		case b.Type() == "shards" && len(b.Labels()) == 1:
			if from, to, err := ParseRange(b.Labels()[0]); err == nil && FormatRange(from, to) != b.Labels()[0] {
				b.SetLabels([]string{FormatRange(from, to)})
			}
		case b.Type() == "removed":
			attr := b.Body().GetAttribute("shards")
			if attr == nil {
				continue
			}
			if s, ok := literalString(attr.Expr().BuildTokens(nil)); ok {
				if from, to, err := ParseRange(s); err == nil && FormatRange(from, to) != s {
					b.Body().SetAttributeValue("shards", cty.StringVal(FormatRange(from, to)))
				}
			}
		}
	}
	return hclwrite.Format(f.Bytes()), nil
}

// literalString returns the text of tokens that are a plain quoted string
// with no escapes or interpolation.
func literalString(tokens hclwrite.Tokens) (string, bool) {
	if len(tokens) == 2 && tokens[0].Type == hclsyntax.TokenOQuote && tokens[1].Type == hclsyntax.TokenCQuote {
		return "", true
	}
	if len(tokens) != 3 || tokens[0].Type != hclsyntax.TokenOQuote ||
		tokens[1].Type != hclsyntax.TokenQuotedLit || tokens[2].Type != hclsyntax.TokenCQuote {
		return "", false
	}
	s := string(tokens[1].Bytes)
	if strings.ContainsAny(s, `\$%`) {
		return "", false
	}
	return s, true
}
