package config

import (
	"fmt"
	"strconv"
	"strings"
)

// rangeError explains why a range label is malformed. Suggestion, when not
// empty, is a corrected label the user probably meant.
type rangeError struct {
	Problem    string
	Suggestion string
}

func (e *rangeError) Error() string { return e.Problem }

// ParseRange reads a shard range label: a shard number ("7") or an
// inclusive range ("1-128"). Blanks around the numbers and the dash and
// leading zeros are accepted; FormatRange writes the canonical form.
func ParseRange(label string) (from, to int, err error) {
	s := strings.TrimSpace(label)
	if s == "" {
		return 0, 0, &rangeError{Problem: "the range is empty"}
	}
	if s[0] == '-' {
		return 0, 0, &rangeError{Problem: "shard numbers cannot be negative", Suggestion: suggestUnsigned(s)}
	}
	first, second, isRange := strings.Cut(s, "-")
	from, err = parseShardNumber(first, s)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return from, from, nil
	}
	if strings.TrimSpace(second) == "" {
		return 0, 0, &rangeError{Problem: fmt.Sprintf("the range %q has no end", s), Suggestion: strconv.Itoa(from)}
	}
	if strings.HasPrefix(strings.TrimSpace(second), "-") {
		return 0, 0, &rangeError{Problem: "shard numbers cannot be negative", Suggestion: suggestUnsigned(s)}
	}
	to, err = parseShardNumber(second, s)
	if err != nil {
		return 0, 0, err
	}
	if to < from {
		return 0, 0, &rangeError{
			Problem:    fmt.Sprintf("the range %q is reversed: its end is below its start", s),
			Suggestion: FormatRange(to, from),
		}
	}
	return from, to, nil
}

// parseShardNumber reads one number of a range label (whole is the label,
// for messages).
func parseShardNumber(p, whole string) (int, error) {
	p = strings.TrimSpace(p)
	switch {
	case p == "":
		return 0, &rangeError{Problem: fmt.Sprintf("%q is not a shard number or range", whole)}
	case p[0] == '+':
		return 0, &rangeError{Problem: "a shard number cannot have a leading '+'", Suggestion: strings.ReplaceAll(strings.ReplaceAll(whole, "+", ""), " ", "")}
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, &rangeError{Problem: fmt.Sprintf("%q is not a shard number or range: %q is not a number", whole, p)}
		}
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return 0, &rangeError{Problem: fmt.Sprintf("shard number %s is too large", p)}
	}
	return n, nil
}

// suggestUnsigned guesses what a label with minus signs meant: the same
// numbers without sign, in order ("-5" -> "5", "-3-5" -> "3-5").
func suggestUnsigned(s string) string {
	var nums []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '-' || r == ' ' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return ""
		}
		nums = append(nums, n)
	}
	switch len(nums) {
	case 1:
		return strconv.Itoa(nums[0])
	case 2:
		return FormatRange(min(nums[0], nums[1]), max(nums[0], nums[1]))
	}
	return ""
}

// FormatRange writes a range label in canonical form: "7" for a single
// shard, "1-128" for a range.
func FormatRange(from, to int) string {
	if from == to {
		return strconv.Itoa(from)
	}
	return strconv.Itoa(from) + "-" + strconv.Itoa(to)
}

// String writes the range in label form, for messages.
func (r ShardRange) String() string { return FormatRange(r.From, r.To) }

// Len is the number of shards in the range.
func (r ShardRange) Len() int { return r.To - r.From + 1 }

// Contains reports whether shard n is in the range.
func (r ShardRange) Contains(n int) bool { return r.From <= n && n <= r.To }
