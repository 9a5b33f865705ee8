// Package planner turns the topology files and the live state into a plan:
// the ordered, typed steps that make the cluster match the files (Compute),
// the one model that the text, Markdown and JSON renderers write
// (render.go), and the plan file that saves a plan with fingerprints of
// what it was made from (planfile.go).
//
// planner never opens a connection and never reads the clock or the
// environment: the live state comes in as a state.Cluster and the time as
// Input.Now, so that the same Input always gives a byte-identical Plan and
// a plan can be reviewed before anything touches a node. The only files it
// touches are plan files, when asked to load or save one. Callers read the
// cluster (runner.Plan) and carry the plan out (executor.Apply).
package planner
