// Package units formats and parses sizes the way PostgreSQL users read them.
package units

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// FormatBytes prints a byte count with a binary unit and three significant
// digits at most: 512 B, 1.5 kB, 12.3 MB, 1.25 GB. The unit names follow
// pg_size_pretty (kB, MB, GB, TB), which are powers of 1024 there too.
func FormatBytes(b float64) string {
	if b < 0 {
		return "-" + FormatBytes(-b)
	}
	names := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	i := 0
	for b >= 1024 && i < len(names)-1 {
		b /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", b)
	}
	switch {
	case b >= 100:
		return fmt.Sprintf("%.0f %s", b, names[i])
	case b >= 10:
		return fmt.Sprintf("%.1f %s", b, names[i])
	default:
		return fmt.Sprintf("%.2f %s", b, names[i])
	}
}

// FormatNumber prints a unitless weight compactly: integers as they are,
// other values with up to two decimals.
func FormatNumber(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

var sizePattern = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$`)

var multipliers = map[string]float64{
	"b": 1, "byte": 1, "bytes": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
	"p": 1 << 50, "pb": 1 << 50, "pib": 1 << 50,
}

// ParseSize reads a number with an optional size unit (bytes, kB, MB, GB,
// TB, PB; case-insensitive, powers of 1024 as in PostgreSQL). hasUnit is
// false for a plain number, whose value is returned as it is.
func ParseSize(s string) (value float64, hasUnit bool, err error) {
	m := sizePattern.FindStringSubmatch(s)
	if m == nil {
		return 0, false, fmt.Errorf("%q is not a number with an optional unit such as \"120 MB\"", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false, fmt.Errorf("%q: %w", s, err)
	}
	if m[2] == "" {
		return v, false, nil
	}
	mult, ok := multipliers[strings.ToLower(m[2])]
	if !ok {
		return 0, false, fmt.Errorf("%q: unknown unit %q (use B, kB, MB, GB, TB or PB)", s, m[2])
	}
	return v * mult, true, nil
}

// ParseBytes reads a size; a plain number counts as bytes.
func ParseBytes(s string) (int64, error) {
	v, _, err := ParseSize(s)
	if err != nil {
		return 0, err
	}
	return int64(v), nil
}

// FormatDuration writes d the way durations are written in topology files
// and flags, without the zero minutes and seconds time.Duration.String
// adds: "168h", "1h30m", not "168h0m0s".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// FormatMS writes a short duration in milliseconds with one decimal, as
// write pauses are reported: "4.2 ms".
func FormatMS(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}
