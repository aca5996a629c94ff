package charttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryValueDocumented: each value in values.yaml is named in the chart's README, either
// itself or through a documented parent (e.g. probes.liveness covers its timing fields).
func TestEveryValueDocumented(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(readme)
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if prefix != "" && strings.Contains(doc, "`"+prefix+"`") {
			return
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) == 0 {
			t.Errorf("value %s is not documented in README.md", prefix)
			return
		}
		for k, sub := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			walk(p, sub)
		}
	}
	walk("", loadChart(t).Values)
}
