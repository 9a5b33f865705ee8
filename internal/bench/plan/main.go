// Command plan times planning a large cluster without servers: loading the
// topology files, computing the plan against a synthetic live state, and
// rendering it as text and JSON.
//
//	go run ./internal/bench/plan [-shards 10000] [-nodes 50]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/pgms-dev/pgms/internal/synthetic"
	"github.com/pgms-dev/pgms/planner"
)

func main() {
	shards := flag.Int("shards", 10000, "shards in the topology")
	nodes := flag.Int("nodes", 50, "nodes")
	runs := flag.Int("runs", 20, "repetitions (the median is printed)")
	flag.Parse()

	hcl, live := synthetic.Cluster(*shards, *nodes)
	var load, compute, text, js, total []time.Duration
	var steps int
	for i := 0; i < *runs; i++ {
		t0 := time.Now()
		top, err := synthetic.Topology(hcl)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		t1 := time.Now()
		p := planner.Compute(planner.Input{Desired: top, Live: live, Now: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), LibraryVersion: 1})
		t2 := time.Now()
		var buf bytes.Buffer
		planner.Text{}.Render(&buf, p)
		t3 := time.Now()
		buf.Reset()
		planner.JSON{}.Render(&buf, p)
		t4 := time.Now()
		load, compute, text, js, total = append(load, t1.Sub(t0)), append(compute, t2.Sub(t1)), append(text, t3.Sub(t2)), append(js, t4.Sub(t3)), append(total, t4.Sub(t0))
		steps = len(p.Steps)
	}
	fmt.Printf("plan benchmark: %d shards on %d nodes, %d steps (a tenth of the shards move), median of %d runs\n\n", *shards, *nodes, steps, *runs)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tmedian\t")
	for _, row := range []struct {
		name string
		d    []time.Duration
	}{{"load topology (HCL)", load}, {"compute plan", compute}, {"render text", text}, {"render JSON", js}, {"total", total}} {
		fmt.Fprintf(tw, "%s\t%v\t\n", row.name, median(row.d).Round(10*time.Microsecond))
	}
	tw.Flush()
	fmt.Printf("\ntarget: total well under 1s (ratio %.3f of 1s)\n", median(total).Seconds())
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
