package main

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dockerfile returns the instructions of the repository's Dockerfile, one
// per logical line (continuations joined), comments dropped.
func dockerfile(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if more, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(more + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// buildArgs returns the ARG defaults of a stage.
func buildArgs(stage []string) map[string]string {
	args := map[string]string{}
	for _, l := range stage {
		if rest, ok := strings.CutPrefix(l, "ARG "); ok {
			name, def, _ := strings.Cut(rest, "=")
			args[name] = def
		}
	}
	return args
}

// TestDockerfile checks the worker image without a Docker engine: the
// final stage runs as the non-root user the Helm chart expects, with the
// entrypoint, command and port it expects; the worker binary is built from
// the MAIN build argument (default: this example) and projectorctl from
// PROJECTORCTL, and the binaries it names are built statically from
// packages that build that way: no cgo, no dynamic loader (PT_INTERP), so
// they run on distroless/static.
func TestDockerfile(t *testing.T) {
	lines := dockerfile(t)
	var stages [][]string
	for _, l := range lines {
		if strings.HasPrefix(strings.ToUpper(l), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("instruction before FROM: %s", l)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], l)
	}
	if len(stages) != 2 {
		t.Fatalf("%d stages, want a builder and a final stage", len(stages))
	}
	build, final := stages[0], stages[1]
	if !strings.HasPrefix(build[0], "FROM golang:1.26") {
		t.Errorf("builder %q, want golang:1.26", build[0])
	}
	if !regexp.MustCompile(`^FROM (gcr\.io/distroless/static|scratch)`).MatchString(final[0]) {
		t.Errorf("final stage %q, want distroless/static or scratch", final[0])
	}
	has := func(stage []string, want string) bool { return slices.Contains(stage, want) }
	for _, want := range []string{"USER 65532:65532", "EXPOSE 8080", `ENTRYPOINT ["/usr/local/bin/worker"]`, `CMD ["worker"]`} {
		if !has(final, want) {
			t.Errorf("final stage lacks %q", want)
		}
	}
	if i := slices.IndexFunc(final, func(l string) bool { return strings.HasPrefix(l, "USER ") }); i >= 0 && final[i] != "USER 65532:65532" {
		t.Errorf("%q: want the non-root user 65532 the chart runs as", final[i])
	}
	buildText := strings.Join(build, "\n")
	// The worker's package is a build argument; its default is this example.
	args := buildArgs(build)
	if args["MAIN"] != "./examples/billing" || args["PROJECTORCTL"] != "./cmd/projectorctl" {
		t.Errorf("build arguments %v, want MAIN=./examples/billing and PROJECTORCTL=./cmd/projectorctl", args)
	}
	if !regexp.MustCompile(`go build [^&]*-o /out/worker \$\{MAIN\}`).MatchString(buildText) {
		t.Error("the worker binary is not built from ${MAIN}")
	}
	if n := strings.Count(buildText, "-X github.com/projector-dev/projector/buildinfo.version=${VERSION}"); n != 2 || args["VERSION"] == "" {
		t.Errorf("the version is stamped into %d binaries (VERSION %q), want both", n, args["VERSION"])
	}
	buildText = regexp.MustCompile(`\$\{(\w+)\}`).ReplaceAllStringFunc(buildText, func(ref string) string {
		if v, ok := args[ref[2:len(ref)-1]]; ok {
			return v
		}
		return ref
	})
	if !strings.Contains(buildText, "CGO_ENABLED=0") {
		t.Error("the builder does not set CGO_ENABLED=0")
	}
	// Every binary the final stage copies is built in the builder from a
	// package of this module.
	packages := map[string]string{} // output path -> package
	for _, m := range regexp.MustCompile(`go build [^&]*?-o (\S+) (\./\S+)`).FindAllStringSubmatch(buildText, -1) {
		packages[m[1]] = m[2]
	}
	copied := map[string]string{} // installed path -> package
	for _, l := range final {
		if m := regexp.MustCompile(`^COPY --from=\S+ (\S+) (\S+)$`).FindStringSubmatch(l); m != nil {
			pkg, ok := packages[m[1]]
			if !ok {
				t.Errorf("%q copies %s, which the builder does not build", l, m[1])
			}
			copied[m[2]] = pkg
		}
	}
	want := map[string]string{"/usr/local/bin/worker": "./examples/billing", "/usr/local/bin/projectorctl": "./cmd/projectorctl"}
	for path, pkg := range want {
		if copied[path] != pkg {
			t.Errorf("%s comes from %q, want %s", path, copied[path], pkg)
		}
	}
	if testing.Short() {
		t.Skip("building the binaries")
	}
	dir := t.TempDir()
	for path, pkg := range copied {
		out := filepath.Join(dir, filepath.Base(path))
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
		f, err := elf.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked (it has an interpreter)", path)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v", path, libs)
		}
		f.Close()
	}
}
