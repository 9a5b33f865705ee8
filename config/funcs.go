package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// callError is an error of one of our functions that knows how to present
// itself: hcl's generic "Error in function call" is replaced by it.
type callError struct {
	summary, detail string
	unsetEnv        bool // env() of an unset variable without default
}

func (e *callError) Error() string { return e.detail }

// evalContext returns the functions available in the file named filename:
// env() and file(), the latter relative to the file's directory. There are
// no variables.
func evalContext(filename string, lookupEnv func(string) (string, bool)) *hcl.EvalContext {
	dir := filepath.Dir(filename)
	return &hcl.EvalContext{Functions: map[string]function.Function{
		"env": function.New(&function.Spec{
			Description: "The value of an environment variable, or the default when it is unset.",
			Params:      []function.Parameter{{Name: "name", Type: cty.String}},
			VarParam:    &function.Parameter{Name: "default", Type: cty.String},
			Type:        function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				name := args[0].AsString()
				if len(args) > 2 {
					return cty.NilVal, &callError{
						summary: "Too many arguments to env()",
						detail:  fmt.Sprintf(`env() takes a variable name and an optional default: env(%q) or env(%q, "default").`, name, name),
					}
				}
				if v, ok := lookupEnv(name); ok {
					return cty.StringVal(v), nil
				}
				if len(args) == 2 {
					return args[1], nil
				}
				return cty.NilVal, &callError{
					summary:  "Environment variable not set",
					detail:   fmt.Sprintf(`The environment variable %s is not set. Set it, or give env() a default: env(%q, "...").`, name, name),
					unsetEnv: true,
				}
			},
		}),
		"file": function.New(&function.Spec{
			Description: "The content of a file, relative to the configuration file, without its trailing newline.",
			Params:      []function.Parameter{{Name: "path", Type: cty.String}},
			Type:        function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				p := args[0].AsString()
				if !filepath.IsAbs(p) {
					p = filepath.Join(dir, p)
				}
				b, err := os.ReadFile(p)
				if err != nil {
					var pe *os.PathError
					if errors.As(err, &pe) {
						err = pe.Err
					}
					return cty.NilVal, &callError{
						summary: "Cannot read file",
						detail:  fmt.Sprintf("file(%q) cannot read %s: %v. Paths are relative to the directory of %s.", args[0].AsString(), p, err, filepath.Base(filename)),
					}
				}
				s := strings.TrimSuffix(string(b), "\n")
				return cty.StringVal(strings.TrimSuffix(s, "\r")), nil
			},
		}),
	}}
}

// explainCalls replaces hcl's generic diagnostics for failed calls of our
// functions with their own summary and detail. With allowUnset, env() of an
// unset variable becomes a warning, and unknown reports that the value is
// not available.
func explainCalls(diags hcl.Diagnostics, allowUnset bool) (out hcl.Diagnostics, unknown bool) {
	for _, d := range diags {
		extra, ok := hcl.DiagnosticExtra[hclsyntax.FunctionCallDiagExtra](d)
		var ce *callError
		if !ok || !errors.As(extra.FunctionCallError(), &ce) {
			out = append(out, d)
			continue
		}
		c := *d
		c.Summary, c.Detail = ce.summary, ce.detail
		if ce.unsetEnv && allowUnset {
			c.Severity = hcl.DiagWarning
			c.Detail += " Checked without it; it must be set for commands that connect."
			unknown = true
		}
		out = append(out, &c)
	}
	return out, unknown
}
