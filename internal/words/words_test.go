package words

import "testing"

func TestCount(t *testing.T) {
	tests := []struct {
		n    int
		noun string
		want string
	}{
		{0, "node", "0 nodes"},
		{1, "node", "1 node"},
		{2, "active shard", "2 active shards"},
	}
	for _, tt := range tests {
		if got := Count(tt.n, tt.noun); got != tt.want {
			t.Errorf("Count(%d, %q) = %q, want %q", tt.n, tt.noun, got, tt.want)
		}
	}
}

func TestShardRange(t *testing.T) {
	tests := []struct {
		from, to int
		want     string
	}{
		{5, 5, "shard 5"},
		{5, 8, "shards 5-8"},
	}
	for _, tt := range tests {
		if got := ShardRange(tt.from, tt.to); got != tt.want {
			t.Errorf("ShardRange(%d, %d) = %q, want %q", tt.from, tt.to, got, tt.want)
		}
	}
}

func TestShards(t *testing.T) {
	tests := []struct {
		nums []int
		max  int
		want string
	}{
		{nil, 0, ""},
		{[]int{5}, 16, "5"},
		{[]int{15, 14, 19, 20, 21, 22, 23}, 16, "14, 15, 19-23"},
		{[]int{1, 2, 3, 7, 9, 10}, 0, "1-3, 7, 9, 10"},
		{[]int{3, 3, 4}, 0, "3, 4"},
		{[]int{1, 3, 5, 7, 8, 9, 10}, 3, "1, 3, 5, … (4 more)"},
		{[]int{1, 3, 4, 6}, 2, "1, 3, … (2 more)"},
	}
	for _, tt := range tests {
		if got := Shards(tt.nums, tt.max); got != tt.want {
			t.Errorf("Shards(%v, %d) = %q, want %q", tt.nums, tt.max, got, tt.want)
		}
	}
}
