package charttest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart under test, relative to this package's directory (tools/charttest).
const chartDir = "../../deploy/helm/projector"

// kubeVersions are rendered and validated: the oldest the chart's kubeVersion allows and a
// current release. The templates do not branch on the version today; the range keeps it honest.
var kubeVersions = []string{"v1.27.0", "v1.34.0"}

// manifest is one rendered document.
type manifest struct {
	Source string // template path, e.g. projector/templates/deployment.yaml
	Hook   bool   // rendered as a Helm hook (not part of the release's manifest)
	YAML   string
	Kind   string
	Name   string
}

func (m manifest) String() string { return fmt.Sprintf("%s %q (%s)", m.Kind, m.Name, m.Source) }

// rendered is a client-only install: what `helm template` and `helm install --dry-run` produce.
type rendered struct {
	Manifests []manifest
	Notes     string
}

// byKind returns the manifests of one kind.
func (r rendered) byKind(kind string) []manifest {
	var out []manifest
	for _, m := range r.Manifests {
		if m.Kind == kind {
			out = append(out, m)
		}
	}
	return out
}

// one returns the only manifest of a kind, failing the test when there is not exactly one.
func (r rendered) one(t *testing.T, kind string) manifest {
	t.Helper()
	ms := r.byKind(kind)
	if len(ms) != 1 {
		t.Fatalf("want exactly one %s, rendered %d: %v", kind, len(ms), r.kinds())
	}
	return ms[0]
}

func (r rendered) kinds() []string {
	var ks []string
	for _, m := range r.Manifests {
		ks = append(ks, m.Kind+"/"+m.Name)
	}
	return ks
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart %s: %v", chartDir, err)
	}
	return c
}

// ciValueFiles are the chart's ci/*-values.yaml, the value sets CI lints and validates.
func ciValueFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no ci/*-values.yaml in %s", chartDir)
	}
	return files
}

// valueSets are "default" plus every ci file, keyed by a readable name.
func valueSets(t *testing.T) map[string]string {
	t.Helper()
	sets := map[string]string{"default": ""}
	for _, f := range ciValueFiles(t) {
		sets[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = f
	}
	return sets
}

// testImage is the image.repository every value set gives: the chart has no default image (there
// is no published one; each user builds their own, see docs/deploy.md).
const testImage = "registry.example.com/billing-worker"

// required are the values the chart cannot do without.
func required() map[string]any {
	return map[string]any{"image": map[string]any{"repository": testImage}}
}

// readValues reads a ci values file; "" means the defaults plus the required values.
func readValues(t *testing.T, file string) map[string]any {
	t.Helper()
	if file == "" {
		return required()
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return v
}

// values builds user-supplied values from YAML snippets, later ones winning, like repeated -f,
// on top of the required values.
func values(t *testing.T, docs ...string) map[string]any {
	t.Helper()
	out := required()
	for _, d := range docs {
		var v map[string]any
		if err := yaml.Unmarshal([]byte(d), &v); err != nil {
			t.Fatalf("values %q: %v", d, err)
		}
		out = mergeValues(out, v)
	}
	return out
}

// mergeValues merges b into a the way Helm merges -f files: maps recursively, everything else replaced.
func mergeValues(a, b map[string]any) map[string]any {
	out := maps.Clone(a)
	for k, v := range b {
		if bm, ok := v.(map[string]any); ok {
			if am, ok := out[k].(map[string]any); ok {
				out[k] = mergeValues(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// render installs the chart client-only (no cluster) into namespace "projector" as release
// "billing", with the given kube version, and returns every manifest including hooks. The chart's
// values.schema.json is enforced as on a real install.
func render(t *testing.T, kubeVersion string, vals map[string]any) (rendered, error) {
	t.Helper()
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(&action.Configuration{Log: t.Logf})
	install.ClientOnly = true
	install.DryRun = true
	install.Replace = true
	install.ReleaseName = "billing"
	install.Namespace = "projector"
	install.KubeVersion = kv
	rel, err := install.Run(loadChart(t), vals)
	if err != nil {
		return rendered{}, err
	}
	out := rendered{Notes: rel.Info.Notes}
	add := func(source, body string, hook bool) {
		for _, doc := range releaseutil.SplitManifests(body) {
			var head struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: not YAML: %v\n%s", source, err, doc)
			}
			if head.Kind == "" {
				continue // a template that rendered only comments
			}
			out.Manifests = append(out.Manifests, manifest{Source: source, Hook: hook, YAML: doc, Kind: head.Kind, Name: head.Metadata.Name})
		}
	}
	// The release manifest carries "# Source:" comments; split per document and recover them.
	for _, doc := range releaseutil.SplitManifests(rel.Manifest) {
		source := ""
		if line, _, ok := strings.Cut(strings.TrimSpace(doc), "\n"); ok && strings.HasPrefix(line, "# Source: ") {
			source = strings.TrimPrefix(line, "# Source: ")
		}
		add(source, doc, false)
	}
	for _, h := range rel.Hooks {
		add(h.Path, h.Manifest, true)
	}
	slices.SortStableFunc(out.Manifests, func(a, b manifest) int { return strings.Compare(a.Kind+a.Name, b.Kind+b.Name) })
	return out, nil
}

// mustRender renders with the newest tested kube version and fails the test on an error.
func mustRender(t *testing.T, vals map[string]any) rendered {
	t.Helper()
	r, err := render(t, kubeVersions[len(kubeVersions)-1], vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return r
}

// renderError renders and returns the error, failing the test when rendering succeeds.
func renderError(t *testing.T, vals map[string]any) error {
	t.Helper()
	_, err := render(t, kubeVersions[len(kubeVersions)-1], vals)
	if err == nil {
		t.Fatal("render succeeded, want an error")
	}
	return err
}
