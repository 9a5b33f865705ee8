package units

import (
	"testing"
	"time"
)

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.00 kB"}, {1536, "1.50 kB"},
		{12.34 * (1 << 20), "12.3 MB"}, {367 * (1 << 20), "367 MB"}, {1.25 * (1 << 30), "1.25 GB"},
	}
	for _, tt := range tests {
		if got := FormatBytes(tt.in); got != tt.want {
			t.Errorf("FormatBytes(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    float64
		hasUnit bool
		wantErr bool
	}{
		{"120 MB", 120 << 20, true, false},
		{"8192 bytes", 8192, true, false},
		{"1.5GB", 1.5 * (1 << 30), true, false},
		{"42", 42, false, false},
		{"3 kB", 3072, true, false},
		{"12 parsecs", 0, false, true},
		{"MB", 0, false, true},
		{"-1 MB", 0, false, true},
	}
	for _, tt := range tests {
		got, hasUnit, err := ParseSize(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseSize(%q) error = %v", tt.in, err)
			continue
		}
		if !tt.wantErr && (got != tt.want || hasUnit != tt.hasUnit) {
			t.Errorf("ParseSize(%q) = %v, %v; want %v, %v", tt.in, got, hasUnit, tt.want, tt.hasUnit)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{168 * time.Hour: "168h", 90 * time.Minute: "1h30m", 45 * time.Second: "45s", 2*time.Hour + 3*time.Second: "2h0m3s"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestFormatMS(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0.0 ms"}, {4200 * time.Microsecond, "4.2 ms"}, {1500 * time.Millisecond, "1500.0 ms"}, {50 * time.Microsecond, "0.1 ms"},
	}
	for _, tt := range tests {
		if got := FormatMS(tt.in); got != tt.want {
			t.Errorf("FormatMS(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
