package jsonschema

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.schema.json", `{
  "type": "object",
  "required": ["kind"],
  "additionalProperties": false,
  "properties": {
    "kind": {"enum": ["x", "y"]},
    "n": {"type": "integer"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "b": {"$ref": "b.schema.json#/$defs/b"},
    "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    "v": {"const": 1}
  }
}`)
	write("b.schema.json", `{"$defs": {"b": {"type": ["object", "null"], "properties": {"ok": {"type": "boolean"}}, "additionalProperties": false}}}`)
	write("bad.schema.json", `{"type": "object", "minProperties": 1}`)
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		schema, doc string
		want        []string // parts of the error; none: valid
	}{
		{"a.schema.json", `{"kind": "x", "n": 3, "tags": ["a"], "b": {"ok": true}, "either": 2, "v": 1}`, nil},
		{"a.schema.json", `{"kind": "y", "b": null, "either": "s"}`, nil},
		{"a.schema.json", `{"n": 1.5}`, []string{`/: required property "kind" is missing`, "/n: a number is not of type integer"}},
		{"a.schema.json", `{"kind": "z", "extra": 1}`, []string{"/kind: z is not one of", "/extra: property is not in the schema"}},
		{"a.schema.json", `{"kind": "x", "tags": [1], "b": {"ok": 1}}`, []string{"/tags/0: a number is not of type string", "/b/ok: a number is not of type boolean"}},
		{"a.schema.json", `{"kind": "x", "either": true, "v": 2}`, []string{"/either: matches 0 of the oneOf", "/v: 2 is not 1"}},
		{"bad.schema.json", `{}`, []string{`keyword "minProperties" is not supported`}},
	}
	for _, tc := range tests {
		err := set.Validate(tc.schema, []byte(tc.doc))
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.doc, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: valid, want %q", tc.doc, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v\nlacks %q", tc.doc, err, w)
			}
		}
	}
}
