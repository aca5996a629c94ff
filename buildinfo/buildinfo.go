// Package buildinfo tells which build of Projector is running: its version,
// the commit it was built from, and the Go version. projectorctl version,
// the worker's --version, the projector_build_info metric and the
// service.version resource attribute all report it.
//
// The version is stamped at build time:
//
//	go build -ldflags "-X github.com/projector-dev/projector/buildinfo.version=v0.2.0" ./cmd/projectorctl
//
// (the Dockerfile does it with its VERSION argument). Without a stamp it is
// the module version Go recorded (a tagged module required by a user's
// main), else "devel".
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// version is set with -ldflags -X at build time.
var version string

// Info describes the running build.
type Info struct {
	// Version is the stamped version, the module version, or "devel".
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from, when Go
	// recorded it; Modified says the work tree had changes.
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string `json:"go_version"`
}

const module = "github.com/projector-dev/projector"

var (
	once sync.Once
	info Info
)

// Get returns the running build's Info.
func Get() Info {
	once.Do(func() { info = read(version, debug.ReadBuildInfo) })
	return info
}

func read(stamped string, readBuild func() (*debug.BuildInfo, bool)) Info {
	i := Info{Version: stamped, GoVersion: runtime.Version()}
	bi, ok := readBuild()
	if ok {
		if i.Version == "" {
			switch {
			case bi.Main.Path == module && bi.Main.Version != "" && bi.Main.Version != "(devel)":
				i.Version = bi.Main.Version
			default:
				for _, d := range bi.Deps {
					if d.Path == module {
						i.Version = d.Version
					}
				}
			}
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Revision = s.Value
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	return i
}

// String is the one-line form: "v0.2.0 (commit 1a2b3c4d5e6f, go1.26.0)".
func (i Info) String() string {
	rev := i.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	switch {
	case rev == "":
		return fmt.Sprintf("%s (%s)", i.Version, i.GoVersion)
	case i.Modified:
		return fmt.Sprintf("%s (commit %s, modified, %s)", i.Version, rev, i.GoVersion)
	}
	return fmt.Sprintf("%s (commit %s, %s)", i.Version, rev, i.GoVersion)
}
