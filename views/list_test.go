package views

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/internal/golden"
)

func TestListRender(t *testing.T) {
	tests := []struct {
		name string
		l    List
	}{
		{"list_bytes.golden", List{WeightInBytes: true, Nodes: []ListNode{
			{Node: "db-b:5432/app", Shards: []ListShard{
				{Schema: "sh0003", Weight: 3 << 30, Extra: []Column{{Name: "tables", Value: "12"}}},
				{Schema: "sh0004", Weight: 512 << 20, Extra: []Column{{Name: "tables", Value: "12"}}},
			}},
			{Node: "db-a:5432/app", Shards: []ListShard{
				{Schema: "sh0000", Weight: 8192, Extra: []Column{{Name: "tables", Value: "1"}}},
			}},
			{Node: "db-c:5432/app", Error: "node db-c:5432/app: cannot connect: connection refused"},
			{Node: "db-d:5432/app"},
		}}},
		{"list_custom_weight.golden", List{WeightInBytes: false, Nodes: []ListNode{
			{Node: "db-a:5432/app", Shards: []ListShard{
				{Schema: "sh0001", Weight: 1500, Extra: []Column{{Name: "users", Value: "1500"}, {Name: "note", Value: "busy"}}},
				{Schema: "sh0002", Weight: 500.5, Extra: []Column{{Name: "users", Value: "500"}, {Name: "note", Value: ""}}},
			}},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.l
			for i := range l.Nodes {
				for _, s := range l.Nodes[i].Shards {
					l.Nodes[i].Total += s.Weight
				}
				for j := range l.Nodes[i].Shards {
					if l.Nodes[i].Total > 0 {
						l.Nodes[i].Shards[j].Share = l.Nodes[i].Shards[j].Weight / l.Nodes[i].Total
					}
				}
			}
			l.total()
			var b strings.Builder
			if err := (Text{}).Render(&b, &l); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", tt.name), b.String())
			checkJSON(t, strings.TrimSuffix(tt.name, ".golden"), &l)
		})
	}
}
