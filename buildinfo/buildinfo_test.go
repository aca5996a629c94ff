package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	build := func(main string, deps ...*debug.Module) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Path: module, Version: main}, Deps: deps,
				Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}, true
		}
	}
	for _, c := range []struct {
		name, stamped, want string
		read                func() (*debug.BuildInfo, bool)
	}{
		{"stamped", "v0.2.0", "v0.2.0", build("(devel)")},
		{"module version", "", "v0.3.1", build("v0.3.1")},
		{"a user's main", "", "v0.4.0", func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Path: "example.com/mine", Version: "(devel)"}, Deps: []*debug.Module{{Path: module, Version: "v0.4.0"}}}, true
		}},
		{"devel", "", "devel", build("(devel)")},
		{"no build info", "", "devel", func() (*debug.BuildInfo, bool) { return nil, false }},
	} {
		if got := read(c.stamped, c.read); got.Version != c.want || got.GoVersion == "" {
			t.Errorf("%s: %+v, want version %s", c.name, got, c.want)
		}
	}
	i := read("v0.2.0", build("(devel)"))
	if s := i.String(); !strings.HasPrefix(s, "v0.2.0 (commit 0123456789ab, modified, go") {
		t.Errorf("String = %q", s)
	}
	if Get().Version == "" {
		t.Error("Get has no version")
	}
}
