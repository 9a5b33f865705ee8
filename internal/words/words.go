// Package words writes the counts, shard ranges and shard lists of pgms's
// messages and reports, so that every command says them the same way:
// "1 node", "3 nodes", "shards 5-8", "1-3, 7, 9-10".
package words

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Count writes n with a noun, adding an s unless n is one: "1 node",
// "3 nodes".
func Count(n int, noun string) string {
	return strconv.Itoa(n) + " " + Plural(n, noun, noun+"s")
}

// Plural picks one or many by n.
func Plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// ShardRange names an inclusive range of shards: "shard 5", "shards 5-8".
func ShardRange(from, to int) string {
	if from == to {
		return fmt.Sprintf("shard %d", from)
	}
	return fmt.Sprintf("shards %d-%d", from, to)
}

// Shards writes shard numbers compactly, in order, each run of three or
// more consecutive numbers as a range: "3, 5-8", "1, 2". With max above
// zero it writes at most max items and then says how many shards it left
// out: "1, 3, … (4 more)".
func Shards(nums []int, max int) string {
	nums = slices.Clone(nums)
	slices.Sort(nums)
	nums = slices.Compact(nums)
	var items []string
	left := 0
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		if j-i >= 2 {
			if max > 0 && len(items) == max {
				left += j - i + 1
			} else {
				items = append(items, fmt.Sprintf("%d-%d", nums[i], nums[j]))
			}
			i = j + 1
			continue
		}
		for ; i <= j; i++ {
			if max > 0 && len(items) == max {
				left++
			} else {
				items = append(items, strconv.Itoa(nums[i]))
			}
		}
	}
	s := strings.Join(items, ", ")
	if left > 0 {
		s += fmt.Sprintf(", … (%d more)", left)
	}
	return s
}
