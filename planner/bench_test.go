package planner

import (
	"bytes"
	"testing"

	"github.com/pgms-dev/pgms/internal/synthetic"
)

func BenchmarkCompute10kShards50Nodes(b *testing.B) {
	hcl, live := synthetic.Cluster(10000, 50)
	top, err := synthetic.Topology(hcl)
	if err != nil {
		b.Fatal(err)
	}
	in := Input{Desired: top, Live: live, Now: now, LibraryVersion: 1}
	var buf bytes.Buffer
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := Compute(in)
		buf.Reset()
		if err := (Text{}).Render(&buf, p); err != nil {
			b.Fatal(err)
		}
		if p.Summary.Move != 1000 {
			b.Fatalf("moves = %d, want 1000", p.Summary.Move)
		}
	}
}
