package kafkaprobe

import "testing"

func TestInfoMajor(t *testing.T) {
	for _, tc := range []struct {
		version string
		want    int
	}{
		{"v4.3", 4},
		{"at least v4.4", 4},
		{"v3.9", 3},
		{"between v1.0 and v1.1", 1},
		{"unknown custom version", -1},
		{"", -1},
	} {
		t.Run(tc.version, func(t *testing.T) {
			if got := (Info{Version: tc.version}).Major(); got != tc.want {
				t.Errorf("Major(%q) = %d, want %d", tc.version, got, tc.want)
			}
		})
	}
}
