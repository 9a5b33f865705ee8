package config

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// RewritePlacement returns the new content of every file whose shards
// blocks must change so that shard n is on node placement[n]; shards that
// placement leaves out keep their node, and files that need no change are
// absent from the result. t must have loaded without errors.
//
// The edit is a splice at the positions the parser reports, so comments,
// other blocks and the user's layout stay byte for byte. A block whose
// shards all stay keeps its text; a block that splits keeps its text (and
// comments) for its largest part that stays, the other parts becoming new
// blocks beside it, each with the block's active and pinned flags; a
// changed part merges with a contiguous block of the same file, node and
// flags, and a block emptied that way is deleted with its comments (those
// inside it, the comment lines right above it and a comment after it on
// its line: the diff shows them going). Shard 0 never merges.
func RewritePlacement(t *Topology, placement map[int]string) (map[string][]byte, error) {
	current := t.Placement()
	numbers := make([]int, 0, len(placement))
	for n := range placement {
		numbers = append(numbers, n)
	}
	sort.Ints(numbers)
	for _, n := range numbers {
		if _, ok := current[n]; !ok {
			return nil, fmt.Errorf("config: rewrite placement: shard %d is in no shards block; add it to the files first", n)
		}
		if _, ok := t.Node(placement[n]); !ok {
			return nil, fmt.Errorf("config: rewrite placement: shard %d: no node %q is declared", n, placement[n])
		}
	}

	origins, err := findBlocks(t)
	if err != nil {
		return nil, err
	}
	var pieces []piece
	for i, r := range t.Shards {
		pieces = append(pieces, split(r, i, placement)...)
	}
	groups := joinPieces(pieces, t.Shards)

	assigned := make([][]*group, len(t.Shards))
	for _, g := range groups {
		assigned[g.at] = append(assigned[g.at], g)
	}
	edits := map[string][]edit{}
	for i, r := range t.Shards {
		o := origins[i]
		gs := assigned[i]
		if len(gs) == 1 && gs[0].keeps && gs[0].r.From == r.From && gs[0].r.To == r.To && gs[0].r.Node == r.Node {
			continue
		}
		file := r.DeclRange.Filename
		edits[file] = append(edits[file], o.replace(gs))
	}

	out := make(map[string][]byte, len(edits))
	for file, es := range edits {
		sort.Slice(es, func(i, j int) bool { return es[i].start < es[j].start })
		for k := 1; k < len(es); k++ {
			if es[k].start < es[k-1].end {
				return nil, fmt.Errorf("config: rewrite placement: %s: overlapping edits at bytes %d and %d", file, es[k-1].start, es[k].start)
			}
		}
		b := apply(t.Sources[file], es)
		if _, diags := hclsyntax.ParseConfig(b, file, hcl.InitialPos); diags.HasErrors() {
			return nil, fmt.Errorf("config: rewrite placement: %s would not parse: %s", file, diags.Error())
		}
		out[file] = b
	}
	return out, nil
}

// piece is a run of one shards block whose shards go to the same node.
type piece struct {
	r       ShardRange // the run with its new node and the block's flags
	origin  int        // index of the block in Topology.Shards
	keeps   bool       // this run keeps the block's text
	changed bool       // the block is split or its node changes
}

// group is pieces merged into one block of the result.
type group struct {
	r       ShardRange
	file    string
	changed bool
	keeps   bool // reuses the text of block at
	at      int  // the block whose place the group takes
	// atChanged: the block at is split or changes node.
	atChanged bool
}

// split cuts block i of range r into runs by new node.
func split(r ShardRange, i int, placement map[int]string) []piece {
	var ps []piece
	for n := r.From; n <= r.To; n++ {
		node := r.Node
		if p, ok := placement[n]; ok {
			node = p
		}
		if k := len(ps) - 1; k >= 0 && ps[k].r.Node == node {
			ps[k].r.To = n
			continue
		}
		run := r
		run.From, run.To, run.Node = n, n, node
		ps = append(ps, piece{r: run, origin: i})
	}
	// The block's text goes to its largest run that stays on its node,
	// else to its first run.
	keeper := 0
	best := -1
	for k, p := range ps {
		if p.r.Node == r.Node && p.r.Len() > best {
			keeper, best = k, p.r.Len()
		}
	}
	ps[keeper].keeps = true
	changed := len(ps) > 1 || ps[0].r.Node != r.Node
	for k := range ps {
		ps[k].changed = changed
	}
	return ps
}

// joinPieces merges contiguous pieces of the same file, node and flags
// when at least one of them changed: blocks the placement does not touch
// stay as the user wrote them.
func joinPieces(pieces []piece, blocks []ShardRange) []*group {
	sort.SliceStable(pieces, func(i, j int) bool { return pieces[i].r.From < pieces[j].r.From })
	var groups []*group
	var last *group
	for _, p := range pieces {
		file := blocks[p.origin].DeclRange.Filename
		if last != nil && last.file == file && (last.changed || p.changed) && mergeable(last.r, p.r) {
			last.r.To = p.r.To
			last.changed = true
			// Prefer the text of a block that keeps its node: its
			// comments still hold.
			if p.keeps && (!last.keeps || (last.atChanged && !p.changed)) {
				last.keeps, last.at, last.atChanged = true, p.origin, p.changed
			}
			continue
		}
		last = &group{r: p.r, file: file, changed: p.changed, keeps: p.keeps, at: p.origin, atChanged: p.changed}
		groups = append(groups, last)
	}
	return groups
}

// origin is a shards block as the parser saw it.
type origin struct {
	src        []byte
	r          ShardRange
	block      *hclsyntax.Block
	blankStyle bool // new blocks beside it are set apart by a blank line
}

// findBlocks pairs every range of t.Shards with its parsed block.
func findBlocks(t *Topology) ([]origin, error) {
	byPos := map[string]map[int]*hclsyntax.Block{}
	styles := map[string]map[int]bool{}
	out := make([]origin, len(t.Shards))
	for i, r := range t.Shards {
		file := r.DeclRange.Filename
		src, ok := t.Sources[file]
		if !ok {
			return nil, fmt.Errorf("config: rewrite placement: the source of %s is not loaded", file)
		}
		if byPos[file] == nil {
			f, diags := hclsyntax.ParseConfig(src, file, hcl.InitialPos)
			if diags.HasErrors() {
				return nil, fmt.Errorf("config: rewrite placement: %s", diags.Error())
			}
			byPos[file] = map[int]*hclsyntax.Block{}
			var blocks []*hclsyntax.Block
			for _, b := range f.Body.(*hclsyntax.Body).Blocks {
				if b.Type == "shards" && len(b.Labels) == 1 {
					byPos[file][b.DefRange().Start.Byte] = b
					blocks = append(blocks, b)
				}
			}
			styles[file] = blankStyles(src, blocks)
		}
		b := byPos[file][r.DeclRange.Start.Byte]
		if b == nil || b.Body.Attributes["node"] == nil {
			return nil, fmt.Errorf("config: rewrite placement: no shards block at %s; was the file changed since it was loaded?", Pos(r.DeclRange))
		}
		out[i] = origin{src: src, r: r, block: b, blankStyle: styles[file][b.Range().Start.Byte]}
	}
	return out, nil
}

// edit replaces src[start:end] with text.
type edit struct {
	start, end int
	text       string
}

// replace returns the edit that puts groups gs in the place of the block;
// no groups delete it.
func (o origin) replace(gs []*group) edit {
	start, end := o.block.Range().Start.Byte, o.block.Range().End.Byte
	if len(gs) == 0 {
		return o.deletion(start, end)
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].r.From < gs[j].r.From })
	indent := lineIndent(o.src, start)
	sep := "\n" + indent
	if o.blankStyle {
		sep = "\n" + sep
	}
	oneLine := o.block.Range().Start.Line == o.block.Range().End.Line
	var text bytes.Buffer
	for k, g := range gs {
		if k > 0 {
			text.WriteString(sep)
		}
		if g.keeps {
			text.WriteString(o.edited(g.r))
		} else {
			text.WriteString(shardsBlockText(g.r, oneLine, indent))
		}
	}
	return edit{start: start, end: end, text: text.String()}
}

// edited returns the block's own text with its label and node changed to
// those of r.
func (o origin) edited(r ShardRange) string {
	var es []edit
	if r.From != o.r.From || r.To != o.r.To {
		lr := o.block.LabelRanges[0]
		es = append(es, edit{start: lr.Start.Byte, end: lr.End.Byte, text: quoted(r.String())})
	}
	if r.Node != o.r.Node {
		er := o.block.Body.Attributes["node"].Expr.Range()
		es = append(es, edit{start: er.Start.Byte, end: er.End.Byte, text: quoted(r.Node)})
	}
	rng := o.block.Range()
	for k := range es {
		es[k].start -= rng.Start.Byte
		es[k].end -= rng.Start.Byte
	}
	return string(apply(o.src[rng.Start.Byte:rng.End.Byte], es))
}

// deletion removes the block with what belongs to it: the comment lines
// right above it, a comment after it on its last line, and the lines
// left empty, keeping one blank line where two would meet.
func (o origin) deletion(start, end int) edit {
	src := o.src
	ls := lineStart(src, start)
	le := end
	if j := bytes.IndexByte(src[end:], '\n'); j >= 0 {
		le = end + j
	} else {
		le = len(src)
	}
	before, after := src[ls:start], bytes.TrimSpace(src[end:le])
	if !isBlank(before) || !(len(after) == 0 || isLineComment(after)) {
		// Other text shares the block's lines: remove the block alone.
		return edit{start: start, end: end}
	}
	start, end = ls, le
	if end < len(src) {
		end++ // the newline
	}
	for start > 0 {
		prev := lineStart(src, start-1)
		if !isLineComment(bytes.TrimSpace(src[prev : start-1])) {
			break
		}
		start = prev
	}
	blankBefore := start == 0 || isBlank(src[lineStart(src, start-1):start-1])
	blankAfter := end == len(src) || src[end] == '\n' || (src[end] == '\r' && end+1 < len(src) && src[end+1] == '\n')
	switch {
	case blankBefore && blankAfter && end < len(src):
		end = end + bytes.IndexByte(src[end:], '\n') + 1
	case blankBefore && blankAfter && start > 0:
		start = lineStart(src, start-1)
	}
	return edit{start: start, end: end}
}

func lineStart(src []byte, pos int) int {
	for pos > 0 && src[pos-1] != '\n' {
		pos--
	}
	return pos
}

// isLineComment reports whether trimmed text is a whole # or // comment.
func isLineComment(text []byte) bool {
	return bytes.HasPrefix(text, []byte("#")) || bytes.HasPrefix(text, []byte("//"))
}

// lineIndent returns the blanks before pos on its line, or "" when other
// text precedes it.
func lineIndent(src []byte, pos int) string {
	i := pos
	for i > 0 && (src[i-1] == ' ' || src[i-1] == '\t') {
		i--
	}
	if i > 0 && src[i-1] != '\n' {
		return ""
	}
	return string(src[i:pos])
}

// blankStyles tells, for each shards block of a file (by start byte),
// whether blank lines set it apart from its neighbouring shards blocks:
// the style new blocks beside it follow.
func blankStyles(src []byte, blocks []*hclsyntax.Block) map[int]bool {
	// gapBlank reports a blank line between two blocks; the first and last
	// pieces of the gap are the ends of the blocks' own lines.
	gapBlank := func(a, b *hclsyntax.Block) bool {
		lines := bytes.Split(src[a.Range().End.Byte:b.Range().Start.Byte], []byte("\n"))
		for _, line := range lines[1 : len(lines)-1] {
			if isBlank(line) {
				return true
			}
		}
		return false
	}
	styles := make(map[int]bool, len(blocks))
	for k, b := range blocks {
		blank := len(blocks) > 1
		if k > 0 {
			blank = blank && gapBlank(blocks[k-1], b)
		}
		if k+1 < len(blocks) {
			blank = blank && gapBlank(b, blocks[k+1])
		}
		styles[b.Range().Start.Byte] = blank
	}
	return styles
}

func isBlank(line []byte) bool { return len(bytes.TrimSpace(line)) == 0 }

// apply performs non-overlapping edits on a copy of src.
func apply(src []byte, es []edit) []byte {
	sort.Slice(es, func(i, j int) bool { return es[i].start < es[j].start })
	var out bytes.Buffer
	pos := 0
	for _, e := range es {
		out.Write(src[pos:e.start])
		out.WriteString(e.text)
		pos = e.end
	}
	out.Write(src[pos:])
	return out.Bytes()
}
