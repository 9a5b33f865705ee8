package config

import (
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/units"
)

// FileSuffix ends the name of every topology file.
const FileSuffix = ".pgms.hcl"

var (
	topSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "cluster"},
		{Type: "node", LabelNames: []string{"name"}},
		{Type: "shards", LabelNames: []string{"range"}},
		{Type: "removed"},
	}}
	clusterSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "schema_prefix"}, {Name: "schema_digits"}, {Name: "migrate_command"},
		{Name: "weight_sql"}, {Name: "deactivate_sql"}, {Name: "cleanup_after"},
		{Name: "library_schema"}, {Name: "state_node"}, {Name: "verify"}, {Name: "keep_copy"},
		{Name: "rollback_window"},
	}}
	nodeSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "dsn"}, {Name: "drain"}, {Name: "max_concurrent_moves"}, {Name: "capacity"}, {Name: "publisher_dsn"},
	}}
	shardsSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "node"}, {Name: "active"}, {Name: "pinned"},
	}}
	removedSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "shards"}, {Name: "node"}, {Name: "dsn"}, {Name: "lost"}}}

	// The library's own rule for the prefix (microsharding_set_naming).
	validPrefix = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	validNode   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)
)

// MaxShards bounds the shards the files may list (placed and removed), so
// that a typo in a range cannot make every consumer of the topology
// allocate per-shard state for millions of shards.
const MaxShards = 1_000_000

// maxIdentifier is PostgreSQL's limit on a name, in bytes.
const maxIdentifier = 63

// leftoverSuffix is the longest suffix a moved shard's schema gets
// ("old" + a UTC yyyymmddhhmmss time stamp).
const leftoverSuffix = len("old20060102150405")

// Load reads the topology at path: a directory (every *.pgms.hcl file in it,
// not recursive) or a single file. Diagnostics cover every problem found,
// sorted by file and position. When they hold errors the Topology is
// incomplete: only Files and Sources are meant to be used (to print the
// diagnostics).
func Load(path string, opts ...Option) (*Topology, hcl.Diagnostics) {
	files, diags := ListFiles(path)
	if diags.HasErrors() {
		return &Topology{Sources: map[string][]byte{}}, diags
	}
	sources := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Cannot read configuration file",
				Detail:   err.Error() + ".",
			})
			continue
		}
		sources[f] = b
	}
	if diags.HasErrors() {
		return &Topology{Files: files, Sources: sources}, diags
	}
	return LoadSources(sources, opts...)
}

// ListFiles returns the topology files at path, sorted: path itself when it
// is a file, else the *.pgms.hcl files of the directory (not recursive).
func ListFiles(path string) ([]string, hcl.Diagnostics) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read configuration",
			Detail:   fmt.Sprintf("%v. Give the directory holding the *%s files (or one file) with --config or $PGMS_CONFIG.", err, FileSuffix),
		}}
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	files, err := filepath.Glob(filepath.Join(path, "*"+FileSuffix))
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read configuration", Detail: err.Error() + "."}}
	}
	var regular []string
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && !fi.IsDir() {
			regular = append(regular, f)
		}
	}
	if len(regular) == 0 {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "No configuration files",
			Detail:   fmt.Sprintf("The directory %s holds no *%s file. Give the directory of the topology files with --config or $PGMS_CONFIG.", path, FileSuffix),
		}}
	}
	sort.Strings(regular)
	return regular, nil
}

// LoadSources is Load for files already read: sources maps each file name
// to its content. file() paths are relative to the directory of the name.
func LoadSources(sources map[string][]byte, opts ...Option) (*Topology, hcl.Diagnostics) {
	l := &loader{opts: options{lookupEnv: os.LookupEnv}, nodeDecl: map[string]hcl.Range{}, digitsOK: true}
	for _, o := range opts {
		o(&l.opts)
	}
	t := &Topology{Cluster: defaultCluster(), Sources: sources}
	for name := range sources {
		t.Files = append(t.Files, name)
	}
	sort.Strings(t.Files)
	l.t = t

	// Syntax errors come alone: decoding a partly parsed file would add
	// follow-on errors (unknown nodes, missing ranges) that mislead.
	parser := hclparse.NewParser()
	var bodies []fileBody
	for _, name := range t.Files {
		f, diags := parser.ParseHCL(sources[name], name)
		for _, d := range diags {
			if d.Summary == "Invalid single-argument block definition" {
				d.Detail += " Write the block over several lines, one attribute a line."
			}
		}
		l.diags = append(l.diags, diags...)
		if f != nil {
			bodies = append(bodies, fileBody{body: f.Body, ctx: evalContext(name, l.opts.lookupEnv)})
		}
	}
	if l.diags.HasErrors() {
		return t, sortDiagnostics(l.diags)
	}

	var clusters, nodes, shards, removed []blockIn
	for _, fb := range bodies {
		content, diags := fb.body.Content(topSchema)
		l.diags = append(l.diags, diags...)
		for _, b := range content.Blocks {
			in := blockIn{Block: b, ctx: fb.ctx}
			switch b.Type {
			case "cluster":
				clusters = append(clusters, in)
			case "node":
				nodes = append(nodes, in)
			case "shards":
				shards = append(shards, in)
			case "removed":
				removed = append(removed, in)
			}
		}
	}
	// The cluster settings come first (shard numbers are checked against
	// schema_digits), then the nodes (shards refer to them).
	l.cluster(clusters)
	for _, b := range nodes {
		l.node(b)
	}
	sort.Slice(t.Nodes, func(i, j int) bool { return t.Nodes[i].Name < t.Nodes[j].Name })
	for _, b := range shards {
		l.shards(b)
	}
	for _, b := range removed {
		l.removed(b)
	}
	l.crossCheck()
	sort.SliceStable(t.Shards, func(i, j int) bool { return t.Shards[i].From < t.Shards[j].From })
	sort.SliceStable(t.Removed, func(i, j int) bool { return t.Removed[i].From < t.Removed[j].From })
	return t, sortDiagnostics(l.diags)
}

type fileBody struct {
	body hcl.Body
	ctx  *hcl.EvalContext
}

// blockIn is a block with the evaluation context of its file.
type blockIn struct {
	*hcl.Block
	ctx *hcl.EvalContext
}

type loader struct {
	opts  options
	t     *Topology
	diags hcl.Diagnostics

	digitsOK    bool      // schema_digits is valid: shard widths can be checked
	stateNode   hcl.Range // the state_node attribute, when set
	nodeDecl    map[string]hcl.Range
	shardsNodes []hcl.Range // each placed range's node attribute, index-aligned with t.Shards
}

func (l *loader) errorf(subject hcl.Range, summary, detail string, args ...any) {
	l.diags = append(l.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(detail, args...), Subject: subject.Ptr(),
	})
}

func (l *loader) warnf(subject hcl.Range, summary, detail string, args ...any) {
	l.diags = append(l.diags, &hcl.Diagnostic{
		Severity: hcl.DiagWarning, Summary: summary, Detail: fmt.Sprintf(detail, args...), Subject: subject.Ptr(),
	})
}

// eval evaluates an attribute and converts it to ty. ok is false when the
// value is unusable (an error was reported), null, or unknown (an unset
// environment variable under AllowUnsetEnv); val tells the last two apart.
func (l *loader) eval(attr *hcl.Attribute, ctx *hcl.EvalContext, ty cty.Type, want string) (val cty.Value, ok bool) {
	v, diags := attr.Expr.Value(ctx)
	diags, unknown := explainCalls(diags, l.opts.allowUnsetEnv)
	l.diags = append(l.diags, diags...)
	if unknown && !diags.HasErrors() {
		return cty.UnknownVal(ty), false
	}
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	if v.IsNull() {
		return cty.NullVal(ty), false
	}
	if !v.IsWhollyKnown() {
		return cty.UnknownVal(ty), false
	}
	c, err := convert.Convert(v, ty)
	if err != nil {
		l.errorf(attr.Expr.Range(), "Incorrect value type", "%s must be %s.", attr.Name, want)
		return cty.NilVal, false
	}
	return c, true
}

// peek evaluates an attribute without reporting anything, to tell a
// literal null (written to mean "unset") from a value.
func (l *loader) peek(attr *hcl.Attribute, ctx *hcl.EvalContext) cty.Value {
	v, _ := attr.Expr.Value(ctx)
	return v
}

func isNull(v cty.Value) bool { return v != cty.NilVal && v.IsKnown() && v.IsNull() }

func (l *loader) str(attr *hcl.Attribute, ctx *hcl.EvalContext) (string, bool) {
	v, ok := l.eval(attr, ctx, cty.String, "a string")
	if !ok {
		return "", false
	}
	return v.AsString(), true
}

func (l *loader) boolean(attr *hcl.Attribute, ctx *hcl.EvalContext) (bool, bool) {
	v, ok := l.eval(attr, ctx, cty.Bool, "true or false")
	if !ok {
		return false, false
	}
	return v.True(), true
}

func (l *loader) number(attr *hcl.Attribute, ctx *hcl.EvalContext) (*big.Float, bool) {
	v, ok := l.eval(attr, ctx, cty.Number, "a number")
	if !ok {
		return nil, false
	}
	return v.AsBigFloat(), true
}

// integer reads a whole number; example completes the message, as in
// "schema_digits = 4".
func (l *loader) integer(attr *hcl.Attribute, ctx *hcl.EvalContext, example string) (int, bool) {
	f, ok := l.number(attr, ctx)
	if !ok {
		return 0, false
	}
	i, acc := f.Int64()
	if !f.IsInt() || acc != big.Exact || i > math.MaxInt32 || i < math.MinInt32 {
		l.errorf(attr.Expr.Range(), "Not a whole number", "%s must be a whole number, for example %s.", attr.Name, example)
		return 0, false
	}
	return int(i), true
}

func (l *loader) cluster(blocks []blockIn) {
	if len(blocks) == 0 {
		return
	}
	for _, dup := range blocks[1:] {
		l.errorf(dup.DefRange, "Duplicate cluster block",
			"The cluster block is already defined at %s. Keep one cluster block and move these settings into it.", Pos(blocks[0].DefRange))
	}
	b := blocks[0]
	c := &l.t.Cluster
	c.DeclRange = b.DefRange
	content, diags := b.Body.Content(clusterSchema)
	l.diags = append(l.diags, diags...)
	a := content.Attributes
	if attr := a["schema_prefix"]; attr != nil {
		if s, ok := l.str(attr, b.ctx); ok {
			if !validPrefix.MatchString(s) {
				l.errorf(attr.Expr.Range(), "Invalid schema prefix",
					"schema_prefix %q is not usable: it must start with a lower-case letter or '_' and hold only lower-case letters, digits and '_' (for example \"sh\").", s)
			} else {
				c.SchemaPrefix = s
			}
		}
	}
	if attr := a["schema_digits"]; attr != nil {
		if n, ok := l.integer(attr, b.ctx, "schema_digits = 4"); ok {
			if n < 1 || n > 9 {
				l.errorf(attr.Expr.Range(), "Invalid schema digits",
					"schema_digits is %d; it must be between 1 and 9 (4 gives sh0000 to sh9999).", n)
				l.digitsOK = false
			} else {
				c.SchemaDigits = n
			}
		} else {
			l.digitsOK = false
		}
	}
	if n := len(c.SchemaPrefix) + c.SchemaDigits + leftoverSuffix; n > maxIdentifier {
		subject := b.DefRange
		if attr := a["schema_prefix"]; attr != nil {
			subject = attr.Expr.Range()
		}
		l.errorf(subject, "Schema prefix too long",
			"A moved shard's schema is renamed to %s%sold<timestamp>, %d bytes, over PostgreSQL's %d-byte limit for names. Shorten schema_prefix to at most %d characters.",
			c.SchemaPrefix, strings.Repeat("0", c.SchemaDigits), n, maxIdentifier, maxIdentifier-c.SchemaDigits-leftoverSuffix)
	}
	if attr := a["migrate_command"]; attr != nil {
		c.MigrateCommand = l.command(attr, b.ctx)
	}
	if attr := a["weight_sql"]; attr != nil {
		c.WeightSQL, _ = l.str(attr, b.ctx)
	}
	if attr := a["deactivate_sql"]; attr != nil {
		c.DeactivateSQL, _ = l.str(attr, b.ctx)
	}
	if attr := a["verify"]; attr != nil {
		if s, ok := l.str(attr, b.ctx); ok {
			if slices.Contains(VerifyLevels, s) {
				c.Verify = s
			} else {
				l.errorf(attr.Expr.Range(), "Invalid verification level",
					"verify must be one of %s: how a move compares its copy with the source before switching over.", strings.Join(VerifyLevels, ", "))
			}
		}
	}
	if attr := a["keep_copy"]; attr != nil {
		if s, ok := l.str(attr, b.ctx); ok {
			n, err := units.ParseBytes(s)
			switch {
			case err != nil:
				l.errorf(attr.Expr.Range(), "Invalid size",
					"keep_copy %q is not a size. Write a number with a unit, for example \"64MB\", or \"0\" never to keep an interrupted copy.", s)
			case n <= 0:
				c.KeepCopy = -1
			default:
				c.KeepCopy = n
			}
		}
	}
	if attr := a["cleanup_after"]; attr != nil {
		if s, ok := l.str(attr, b.ctx); ok {
			d, err := time.ParseDuration(s)
			switch {
			case err != nil:
				l.errorf(attr.Expr.Range(), "Invalid duration",
					"cleanup_after %q is not a duration. Write a number with a unit h, m or s, for example \"168h\" for a week.", s)
			case d < 0:
				l.errorf(attr.Expr.Range(), "Invalid duration", "cleanup_after cannot be negative; use \"0s\" to clean up at once.")
			default:
				c.CleanupAfter = d
			}
		}
	}
	if attr := a["rollback_window"]; attr != nil {
		if s, ok := l.str(attr, b.ctx); ok {
			d, err := time.ParseDuration(s)
			switch {
			case err != nil:
				l.errorf(attr.Expr.Range(), "Invalid duration",
					"rollback_window %q is not a duration. Write a number with a unit h, m or s, for example \"1h\", or \"0s\" for no window.", s)
			case d < 0:
				l.errorf(attr.Expr.Range(), "Invalid duration", "rollback_window cannot be negative; use \"0s\" for no window.")
			default:
				c.RollbackWindow = d
			}
		}
	}
	if attr := a["library_schema"]; attr != nil {
		if s, ok := l.str(attr, b.ctx); ok {
			if s == "" || len(s) > maxIdentifier {
				l.errorf(attr.Expr.Range(), "Invalid library schema",
					"library_schema must be a schema name of 1 to %d bytes; the default is %q.", maxIdentifier, defaultCluster().LibrarySchema)
			} else {
				c.LibrarySchema = s
			}
		}
	}
	if attr := a["state_node"]; attr != nil {
		if s, ok := l.str(attr, b.ctx); ok {
			c.StateNode = s
			l.stateNode = attr.Expr.Range()
		}
	}
}

// command reads migrate_command: a list of strings is an argv, a string a
// shell command line.
func (l *loader) command(attr *hcl.Attribute, ctx *hcl.EvalContext) []string {
	v, diags := attr.Expr.Value(ctx)
	diags, _ = explainCalls(diags, l.opts.allowUnsetEnv)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() || v.IsNull() || !v.IsWhollyKnown() {
		return nil
	}
	const want = `migrate_command must be a list of strings run directly, for example ["./migrate.sh", "--up"], or one string run with /bin/sh -c.`
	if v.Type() == cty.String {
		if v.AsString() == "" {
			l.errorf(attr.Expr.Range(), "Empty migrate command", "%s Remove the attribute to run no command.", want)
			return nil
		}
		return []string{"/bin/sh", "-c", v.AsString()}
	}
	lv, err := convert.Convert(v, cty.List(cty.String))
	if err != nil {
		l.errorf(attr.Expr.Range(), "Incorrect value type", "%s", want)
		return nil
	}
	var argv []string
	for _, e := range lv.AsValueSlice() {
		if e.IsNull() {
			l.errorf(attr.Expr.Range(), "Incorrect value type", "%s", want)
			return nil
		}
		argv = append(argv, e.AsString())
	}
	if len(argv) == 0 || argv[0] == "" {
		l.errorf(attr.Expr.Range(), "Empty migrate command", "%s The first element names the program.", want)
		return nil
	}
	return argv
}

// ValidNodeName reports whether name can name a node in topology files.
func ValidNodeName(name string) bool {
	return validNode.MatchString(name) && len(name) <= maxIdentifier
}

func (l *loader) node(b blockIn) {
	name := b.Labels[0]
	n := Node{Name: name, MaxConcurrentMoves: DefaultMaxConcurrentMoves, Capacity: DefaultCapacity, DeclRange: b.DefRange}
	valid := true
	switch {
	case !validNode.MatchString(name):
		l.errorf(b.LabelRanges[0], "Invalid node name",
			"Node name %q is not usable: it must start with a letter or '_' and hold only letters, digits, '_' and '-' (for example \"db1\" or \"eu-west-1\").", name)
		valid = false
	case len(name) > maxIdentifier:
		l.errorf(b.LabelRanges[0], "Invalid node name", "Node name %q is longer than %d bytes; shorten it.", name, maxIdentifier)
		valid = false
	}
	if first, dup := l.nodeDecl[name]; dup {
		l.errorf(b.LabelRanges[0], "Duplicate node",
			"Node %q is already declared at %s. Remove one of the two blocks, or rename this one.", name, Pos(first))
		valid = false
	} else {
		l.nodeDecl[name] = b.DefRange
	}
	content, diags := b.Body.Content(nodeSchema)
	l.diags = append(l.diags, diags...)
	a := content.Attributes
	if attr := a["dsn"]; attr == nil || isNull(l.peek(attr, b.ctx)) {
		l.errorf(b.DefRange, "Missing dsn",
			"Node %q has no dsn. Add one, preferably from the environment so that no password lands in the file: dsn = env(%q).", name, DSNVariable(name))
	} else {
		n.DSNExpr = string(attr.Expr.Range().SliceBytes(l.t.Sources[attr.Expr.Range().Filename]))
		v, ok := l.eval(attr, b.ctx, cty.String, "a string")
		switch {
		case ok && v.AsString() == "":
			l.errorf(attr.Expr.Range(), "Empty dsn",
				"The dsn of node %q is empty. Give a connection string, for example \"postgres://app@db-%s:5432/app\", or check the variable that env() reads.", name, name)
		case ok:
			n.DSN = v.AsString()
		}
		if dsn.Redact(n.DSNExpr) != n.DSNExpr {
			l.warnf(attr.Expr.Range(), "Password in a configuration file",
				"The dsn of node %q holds a password in clear text, and topology files usually live in git. Take the DSN from the environment, dsn = env(%q), or keep the password in ~/.pgpass.", name, DSNVariable(name))
		}
	}
	if attr := a["publisher_dsn"]; attr != nil && !isNull(l.peek(attr, b.ctx)) {
		n.PublisherDSNExpr = string(attr.Expr.Range().SliceBytes(l.t.Sources[attr.Expr.Range().Filename]))
		if v, ok := l.eval(attr, b.ctx, cty.String, "a string"); ok {
			if v.AsString() == "" {
				l.errorf(attr.Expr.Range(), "Empty publisher_dsn",
					"The publisher_dsn of node %q is empty. Give the connection string the other servers use to reach it for moves, or remove the attribute to use the dsn.", name)
			} else {
				n.PublisherDSN = v.AsString()
			}
		}
		if dsn.Redact(n.PublisherDSNExpr) != n.PublisherDSNExpr {
			l.warnf(attr.Expr.Range(), "Password in a configuration file",
				"The publisher_dsn of node %q holds a password in clear text, and topology files usually live in git. Take it from the environment, publisher_dsn = env(%q), or give the destination servers a passfile (passfile=… in the string).", name, DSNVariable(name)+"_PUBLISHER")
		}
	}
	if attr := a["drain"]; attr != nil {
		n.Drain, _ = l.boolean(attr, b.ctx)
	}
	if attr := a["max_concurrent_moves"]; attr != nil {
		if v, ok := l.integer(attr, b.ctx, "max_concurrent_moves = 2"); ok {
			if v < 1 {
				l.errorf(attr.Expr.Range(), "Invalid max_concurrent_moves",
					"max_concurrent_moves is %d; it must be at least 1 (the default). A node that must not take part in moves can be drained instead.", v)
			} else {
				n.MaxConcurrentMoves = v
			}
		}
	}
	if attr := a["capacity"]; attr != nil {
		if f, ok := l.number(attr, b.ctx); ok {
			v, _ := f.Float64()
			if v <= 0 || math.IsInf(v, 0) {
				l.errorf(attr.Expr.Range(), "Invalid capacity",
					"capacity is %s; it must be a number above 0, the node's size relative to the others (default 1.0; 2.0 takes twice the share). To empty a node, set drain = true.", f.Text('g', -1))
			} else {
				n.Capacity = v
			}
		}
	}
	if valid {
		l.t.Nodes = append(l.t.Nodes, n)
	}
}

// DSNVariable is the environment variable pgms proposes for a node's DSN
// (in hints, and in the files pgms import writes): PGMS_DSN_A for node a.
func DSNVariable(node string) string {
	return "PGMS_DSN_" + strings.ToUpper(strings.Map(func(r rune) rune {
		if r == '-' {
			return '_'
		}
		return r
	}, node))
}

// rangeLabel parses the range of a shards or removed block and checks its
// width; subject points at the label text.
func (l *loader) rangeLabel(label string, subject hcl.Range) (from, to int, ok bool) {
	from, to, err := ParseRange(label)
	if err != nil {
		re := err.(*rangeError)
		detail := strings.ToUpper(re.Problem[:1]) + re.Problem[1:] + "."
		if re.Suggestion != "" {
			detail += fmt.Sprintf(" Did you mean %q?", re.Suggestion)
		}
		detail += ` Write a shard number ("7") or an inclusive range ("1-128").`
		l.errorf(subject, "Invalid shard range", "%s", detail)
		return 0, 0, false
	}
	if naming := l.t.Cluster.Naming(); l.digitsOK {
		if max := naming.MaxShard(); to > max {
			l.errorf(subject, "Shard number too wide",
				"Shard %d has %d digits but schema_digits is %d, so the largest shard is %d (%s). Raise schema_digits in the cluster block, or use smaller shard numbers.",
				to, len(fmt.Sprint(to)), naming.Digits, max, naming.SchemaName(max))
			return 0, 0, false
		}
	}
	return from, to, true
}

func (l *loader) shards(b blockIn) {
	content, diags := b.Body.Content(shardsSchema)
	l.diags = append(l.diags, diags...)
	from, to, ok := l.rangeLabel(b.Labels[0], b.LabelRanges[0])
	r := ShardRange{From: from, To: to, Active: true, DeclRange: b.DefRange}
	a := content.Attributes
	var nodeRange hcl.Range
	if attr := a["node"]; attr == nil || isNull(l.peek(attr, b.ctx)) {
		l.errorf(b.DefRange, "Missing node", "Shards %q are placed on no node. Add node = \"NAME\" naming one of the node blocks.", b.Labels[0])
		ok = false
	} else if s, valid := l.str(attr, b.ctx); valid {
		r.Node, nodeRange = s, attr.Expr.Range()
	} else {
		ok = false
	}
	if attr := a["active"]; attr != nil {
		if v, valid := l.boolean(attr, b.ctx); valid {
			r.Active = v
		}
	}
	if attr := a["pinned"]; attr != nil {
		if v, valid := l.boolean(attr, b.ctx); valid {
			r.Pinned = v
			if !v && from == 0 && ok {
				l.warnf(attr.Expr.Range(), "Shard 0 is always pinned",
					"Shard 0 is the global shard: rebalancing never moves it, whatever pinned says. Remove pinned = false.")
			}
		}
	}
	if ok {
		l.t.Shards = append(l.t.Shards, r)
		l.shardsNodes = append(l.shardsNodes, nodeRange)
	}
}

func (l *loader) removed(b blockIn) {
	content, diags := b.Body.Content(removedSchema)
	l.diags = append(l.diags, diags...)
	attr := content.Attributes["shards"]
	nodeAttr := content.Attributes["node"]
	if nodeAttr != nil && !isNull(l.peek(nodeAttr, b.ctx)) {
		if attr != nil {
			l.errorf(attr.Range, "Shards and node in one removed block",
				`A removed block drops shards (shards = "400-410") or retires a node (node = "b"), not both: write two blocks.`)
			return
		}
		l.retired(b, content, nodeAttr)
		return
	}
	for _, name := range []string{"dsn", "lost"} {
		if a := content.Attributes[name]; a != nil {
			l.errorf(a.Range, "Unexpected attribute",
				`%s belongs to a removed block that retires a node (node = "b"); a removed block with shards takes only shards.`, name)
		}
	}
	if attr == nil || isNull(l.peek(attr, b.ctx)) {
		l.errorf(b.DefRange, "Missing shards or node", `A removed block names the shards to drop, shards = "400-410", or the node to retire, node = "b".`)
		return
	}
	s, ok := l.str(attr, b.ctx)
	if !ok {
		return
	}
	if from, to, ok := l.rangeLabel(s, attr.Expr.Range()); ok {
		l.t.Removed = append(l.t.Removed, ShardRange{From: from, To: to, DeclRange: b.DefRange})
	}
}

// retired reads a removed block that retires a node.
func (l *loader) retired(b blockIn, content *hcl.BodyContent, nodeAttr *hcl.Attribute) {
	name, ok := l.str(nodeAttr, b.ctx)
	if !ok {
		return
	}
	r := RetiredNode{Name: name, DeclRange: b.DefRange, NameRange: nodeAttr.Expr.Range()}
	if a := content.Attributes["dsn"]; a != nil && !isNull(l.peek(a, b.ctx)) {
		if v, ok := l.eval(a, b.ctx, cty.String, "a string"); ok {
			r.DSN = v.AsString()
		}
	}
	if a := content.Attributes["lost"]; a != nil {
		r.Lost, _ = l.boolean(a, b.ctx)
	}
	for _, o := range l.t.Retired {
		if o.Name == name {
			l.errorf(nodeAttr.Expr.Range(), "Node retired twice", "Node %q is already retired at %s. Keep one removed block for it.", name, Pos(o.DeclRange))
			return
		}
	}
	l.t.Retired = append(l.t.Retired, r)
}

// crossCheck validates what spans blocks and files: node references,
// overlaps, the state node.
func (l *loader) crossCheck() {
	t := l.t
	names := make([]string, 0, len(l.nodeDecl))
	for n := range l.nodeDecl {
		names = append(names, n)
	}
	sort.Strings(names)
	switch {
	case len(names) == 0 && len(t.Shards) > 0:
		l.errorf(t.Shards[0].DeclRange, "No node declared",
			"Shards are placed, but there is no node block. Declare the nodes, for example node %q { dsn = env(%q) }.", t.Shards[0].Node, DSNVariable(t.Shards[0].Node))
	case len(names) > 0:
		for i, r := range t.Shards {
			if _, ok := l.nodeDecl[r.Node]; ok {
				continue
			}
			if rn, ok := t.RetiredNode(r.Node); ok {
				l.errorf(l.shardsNodes[i], "Shards on a retired node",
					"Node %q is retired at %s: no shard can be placed on it. Place these shards on another node; pgms moves them off %s before retiring it.", r.Node, Pos(rn.DeclRange), r.Node)
				continue
			}
			l.errorf(l.shardsNodes[i], "Unknown node", "%s", unknownNode(r.Node, names))
		}
	}
	for _, rn := range t.Retired {
		if decl, ok := l.nodeDecl[rn.Name]; ok {
			l.errorf(rn.NameRange, "Node both declared and retired",
				"Node %q is declared at %s and retired here. Keep the node block to keep the node, or this removed block to retire it, not both.", rn.Name, Pos(decl))
		}
	}
	total := 0
	for _, r := range append(append([]ShardRange(nil), t.Shards...), t.Removed...) {
		if total += r.Len(); total > MaxShards {
			l.errorf(r.DeclRange, "Too many shards",
				"With shards %q the files list more than %d shards, more than pgms handles. Check the ranges for a typo such as an extra digit.", r.String(), MaxShards)
			break
		}
	}
	if t.Cluster.StateNode != "" {
		if _, ok := l.nodeDecl[t.Cluster.StateNode]; !ok {
			l.errorf(l.stateNode, "Unknown state node", "%s", unknownNode(t.Cluster.StateNode, names))
		}
	} else if len(t.Nodes) > 0 {
		t.Cluster.StateNode = t.Nodes[0].Name
	}
	l.overlaps()
}

func unknownNode(name string, declared []string) string {
	msg := fmt.Sprintf("No node %q is declared.", name)
	if s := closest(name, declared); s != "" {
		msg += fmt.Sprintf(" Did you mean %q?", s)
	}
	if len(declared) > 0 {
		msg += " Declared nodes: " + strings.Join(declared, ", ") + "."
	}
	return msg
}

// overlaps reports every block whose shards are already in another one
// (placed or removed).
func (l *loader) overlaps() {
	all := make([]ShardRange, 0, len(l.t.Shards)+len(l.t.Removed))
	all = append(all, l.t.Shards...)
	all = append(all, l.t.Removed...)
	// Blocks in file order first, so that the later block is the one
	// reported.
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.From != b.From {
			return a.From < b.From
		}
		if a.DeclRange.Filename != b.DeclRange.Filename {
			return a.DeclRange.Filename < b.DeclRange.Filename
		}
		return a.DeclRange.Start.Byte < b.DeclRange.Start.Byte
	})
	var reach *ShardRange // the range reaching furthest so far
	for i := range all {
		r := &all[i]
		if reach != nil && r.From <= reach.To {
			l.overlap(*reach, *r, FormatRange(r.From, min(r.To, reach.To)))
		}
		if reach == nil || r.To > reach.To {
			reach = r
		}
	}
}

func (l *loader) overlap(a, b ShardRange, common string) {
	// Report on the block that comes later in the files.
	if b.DeclRange.Filename < a.DeclRange.Filename ||
		(b.DeclRange.Filename == a.DeclRange.Filename && b.DeclRange.Start.Byte < a.DeclRange.Start.Byte) {
		a, b = b, a
	}
	shardsAre := "Shards " + common + " are"
	if !strings.Contains(common, "-") {
		shardsAre = "Shard " + common + " is"
	}
	switch {
	case a.Node != "" && b.Node != "" && a.Node != b.Node:
		l.errorf(b.DeclRange, "Shard placed on two nodes",
			"%s placed on %s here and on %s at %s. A shard lives on one node: take %s out of one of the two blocks.",
			shardsAre, b.Node, a.Node, Pos(a.DeclRange), common)
	case a.Node != "" && b.Node != "":
		l.errorf(b.DeclRange, "Overlapping shard ranges",
			"%s placed on %s twice: here and in shards %q at %s. Make the ranges disjoint.",
			shardsAre, a.Node, a.String(), Pos(a.DeclRange))
	case a.Node == "" && b.Node == "":
		l.errorf(b.DeclRange, "Overlapping removed ranges",
			"%s removed here and at %s. List each shard in one removed block.", shardsAre, Pos(a.DeclRange))
	default:
		placed, rm := a, b
		if placed.Node == "" {
			placed, rm = b, a
		}
		l.errorf(b.DeclRange, "Shard both placed and removed",
			"%s placed on %s at %s and removed at %s. Keep the shards block to keep them, or the removed block to drop them, not both.",
			shardsAre, placed.Node, Pos(placed.DeclRange), Pos(rm.DeclRange))
	}
}

// sortDiagnostics orders diagnostics by file and position; those without
// a position come first.
func sortDiagnostics(diags hcl.Diagnostics) hcl.Diagnostics {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		default:
			return a.Start.Byte < b.Start.Byte
		}
	})
	return diags
}

// closest returns the name of candidates nearest to name when it is near
// enough to be a likely typo, else "".
func closest(name string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := levenshtein.Distance(name, c, nil); d < bestDist && d < len([]rune(name)) {
			best, bestDist = c, d
		}
	}
	return best
}
