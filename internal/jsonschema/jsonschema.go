// Package jsonschema checks JSON documents against the schema files of
// docs/ in tests: the subset of JSON Schema (2020-12) those files use —
// type, properties, required, additionalProperties, items, enum, const,
// oneOf, $ref and $defs — and no more. A keyword outside the subset is an
// error rather than ignored, so a schema cannot promise more than the
// tests check. It exists so that pgms's documented JSON is tested against
// real output without a dependency for it.
package jsonschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
)

// Set is a directory of schema files, which refer to each other by file
// name ("plan.schema.json#/$defs/step").
type Set struct {
	files map[string]any
}

// Load reads every *.schema.json file of dir.
func Load(dir string) (*Set, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.schema.json"))
	if err != nil {
		return nil, err
	}
	s := &Set{files: map[string]any{}}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		s.files[filepath.Base(p)] = v
	}
	return s, nil
}

// Validate checks the JSON document doc against the schema file named.
// The error lists every violation, each with its JSON pointer.
func (s *Set) Validate(file string, doc []byte) error {
	root, ok := s.files[file]
	if !ok {
		return fmt.Errorf("no schema file %s", file)
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	c := &checker{set: s}
	c.check(file, root, v, "")
	if len(c.errs) > 0 {
		return fmt.Errorf("%s:\n  %s", file, strings.Join(c.errs, "\n  "))
	}
	return nil
}

type checker struct {
	set  *Set
	errs []string
}

func (c *checker) fail(path, format string, args ...any) {
	if path == "" {
		path = "/"
	}
	c.errs = append(c.errs, path+": "+fmt.Sprintf(format, args...))
}

// known are the keywords checked, and those that only document.
var known = map[string]bool{
	"type": true, "properties": true, "required": true, "additionalProperties": true, "items": true,
	"enum": true, "const": true, "oneOf": true, "$ref": true, "$defs": true,
	"$schema": true, "$id": true, "title": true, "description": true, "$comment": true,
}

// check validates v against schema, which belongs to file (for $ref).
func (c *checker) check(file string, schema, v any, path string) {
	switch sc := schema.(type) {
	case bool:
		if !sc {
			c.fail(path, "not allowed here")
		}
		return
	case map[string]any:
		c.checkObject(file, sc, v, path)
	default:
		c.fail(path, "schema is neither an object nor a boolean")
	}
}

func (c *checker) checkObject(file string, sc map[string]any, v any, path string) {
	for k := range sc {
		if !known[k] {
			c.fail(path, "schema keyword %q is not supported by the checker", k)
		}
	}
	if ref, ok := sc["$ref"].(string); ok {
		f, target, err := c.resolve(file, ref)
		if err != nil {
			c.fail(path, "%v", err)
			return
		}
		c.check(f, target, v, path)
	}
	if t, ok := sc["type"]; ok && !typeMatches(t, v) {
		c.fail(path, "%s is not of type %v", kindOf(v), t)
		return
	}
	if e, ok := sc["enum"].([]any); ok && !contains(e, v) {
		c.fail(path, "%v is not one of %v", v, e)
	}
	if k, ok := sc["const"]; ok && !equal(k, v) {
		c.fail(path, "%v is not %v", v, k)
	}
	if alts, ok := sc["oneOf"].([]any); ok {
		matched := 0
		var why []string
		for i, alt := range alts {
			sub := &checker{set: c.set}
			sub.check(file, alt, v, path)
			if len(sub.errs) == 0 {
				matched++
			} else {
				why = append(why, fmt.Sprintf("alternative %d: %s", i, strings.Join(sub.errs, "; ")))
			}
		}
		if matched != 1 {
			c.fail(path, "matches %d of the oneOf alternatives, not exactly one (%s)", matched, strings.Join(why, " | "))
		}
	}
	switch x := v.(type) {
	case map[string]any:
		props, _ := sc["properties"].(map[string]any)
		if req, ok := sc["required"].([]any); ok {
			for _, r := range req {
				if _, ok := x[r.(string)]; !ok {
					c.fail(path, "required property %q is missing", r)
				}
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := path + "/" + k
			if ps, ok := props[k]; ok {
				c.check(file, ps, x[k], p)
				continue
			}
			if ap, ok := sc["additionalProperties"]; ok {
				if b, isBool := ap.(bool); isBool && !b {
					c.fail(p, "property is not in the schema")
				} else if !isBool {
					c.check(file, ap, x[k], p)
				}
			}
		}
	case []any:
		if items, ok := sc["items"]; ok {
			for i, e := range x {
				c.check(file, items, e, fmt.Sprintf("%s/%d", path, i))
			}
		}
	}
}

// resolve finds the schema a $ref names: "other.schema.json#/$defs/x",
// "#/$defs/x" in the same file, or a whole file.
func (c *checker) resolve(file, ref string) (string, any, error) {
	f, pointer, _ := strings.Cut(ref, "#")
	if f == "" {
		f = file
	}
	node, ok := c.set.files[f]
	if !ok {
		return "", nil, fmt.Errorf("$ref %q: no schema file %s", ref, f)
	}
	for _, part := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		if part == "" {
			continue
		}
		m, ok := node.(map[string]any)
		if !ok {
			return "", nil, fmt.Errorf("$ref %q: %s is not an object", ref, part)
		}
		if node, ok = m[part]; !ok {
			return "", nil, fmt.Errorf("$ref %q: no %s", ref, part)
		}
	}
	return f, node, nil
}

func typeMatches(t, v any) bool {
	switch tt := t.(type) {
	case string:
		return isType(tt, v)
	case []any:
		for _, x := range tt {
			if s, ok := x.(string); ok && isType(s, v) {
				return true
			}
		}
	}
	return false
}

func isType(t string, v any) bool {
	switch t {
	case "null":
		return v == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Int64()
		return err == nil
	}
	return false
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case []any:
		return "an array"
	}
	return "an object"
}

func contains(list []any, v any) bool {
	for _, x := range list {
		if equal(x, v) {
			return true
		}
	}
	return false
}

// equal compares a schema value with a document value: numbers by their
// text, as the document decodes them.
func equal(a, b any) bool {
	if n, ok := b.(json.Number); ok {
		if f, ok := a.(float64); ok {
			bf, err := n.Float64()
			return err == nil && bf == f
		}
	}
	return reflect.DeepEqual(a, b)
}
