package charttest

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint/support"
)

// TestLintStrict is `helm lint --strict` (the same code) for the default values and each ci file.
func TestLintStrict(t *testing.T) {
	for name, file := range valueSets(t) {
		for _, kv := range kubeVersions {
			t.Run(name+"/"+kv, func(t *testing.T) {
				v, err := chartutil.ParseKubeVersion(kv)
				if err != nil {
					t.Fatal(err)
				}
				lint := action.NewLint()
				lint.Strict = true
				lint.Namespace = "projector"
				lint.KubeVersion = v
				res := lint.Run([]string{chartDir}, readValues(t, file))
				for _, msg := range res.Messages {
					if msg.Severity > support.InfoSev {
						t.Errorf("lint: %s", msg)
					}
				}
				for _, err := range res.Errors {
					t.Errorf("lint: %v", err)
				}
				if res.TotalChartsLinted != 1 {
					t.Errorf("linted %d charts, want 1", res.TotalChartsLinted)
				}
			})
		}
	}
}

// TestManifestsValidate renders every value set for every tested kube version and decodes each
// manifest strictly against the Kubernetes types (or the minimal CRD types), offline.
func TestManifestsValidate(t *testing.T) {
	for name, file := range valueSets(t) {
		for _, kv := range kubeVersions {
			t.Run(name+"/"+kv, func(t *testing.T) {
				r, err := render(t, kv, readValues(t, file))
				if err != nil {
					t.Fatalf("render: %v", err)
				}
				if len(r.Manifests) == 0 {
					t.Fatal("rendered nothing")
				}
				seen := map[string]bool{}
				for _, m := range r.Manifests {
					if err := validate(m); err != nil {
						t.Errorf("%s: %v\n%s", m, err, m.YAML)
					}
					if seen[m.Kind+"/"+m.Name] {
						t.Errorf("%s rendered twice", m)
					}
					seen[m.Kind+"/"+m.Name] = true
				}
				if strings.TrimSpace(r.Notes) == "" {
					t.Error("NOTES.txt rendered empty")
				}
			})
		}
	}
}

// TestCIValuesCoverEveryTemplate keeps the ci files honest: between them (and the defaults) every
// template renders at least one object, so every template is linted and validated in CI.
func TestCIValuesCoverEveryTemplate(t *testing.T) {
	c := loadChart(t)
	want := map[string]bool{}
	for _, tpl := range c.Templates {
		if strings.HasSuffix(tpl.Name, ".yaml") {
			want["projector/"+tpl.Name] = true
		}
	}
	for _, file := range valueSets(t) {
		for _, m := range mustRender(t, readValues(t, file)).Manifests {
			delete(want, m.Source)
		}
	}
	if len(want) > 0 {
		t.Errorf("templates no value set renders: %v", slices.Sorted(maps.Keys(want)))
	}
}

// TestValidatorRejects makes sure the validation can fail: a mistake of each kind is caught.
func TestValidatorRejects(t *testing.T) {
	r := mustRender(t, values(t, ""))
	dep := r.one(t, "Deployment")
	cases := map[string]struct{ old, new, want string }{
		"unknown field":     {"automountServiceAccountToken: false", "automountServiceAccountToken: false\n      automountToken: false", "unknown field"},
		"wrong type":        {"terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: sixty", "terminationGracePeriodSeconds"},
		"beta API":          {"apiVersion: apps/v1", "apiVersion: apps/v1beta2", "not an API version"},
		"probe port":        {"port: http", "port: metrics", "Probe.httpGet.port: Not found"},
		"selector mismatch": {"app.kubernetes.io/component: worker\n  strategy", "app.kubernetes.io/component: other\n  strategy", "does not match"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(dep.YAML, c.old) {
				t.Fatalf("manifest has no %q", c.old)
			}
			bad := dep
			bad.YAML = strings.Replace(dep.YAML, c.old, c.new, 1)
			err := validate(bad)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("validate = %v, want an error containing %q", err, c.want)
			}
		})
	}
	t.Run("custom resource unknown field", func(t *testing.T) {
		so := mustRender(t, values(t, "autoscaling: {keda: {enabled: true}}")).one(t, "ScaledObject")
		so.YAML = strings.Replace(so.YAML, "pollingInterval:", "pollingIntervall:", 1)
		if err := validate(so); err == nil || !strings.Contains(err.Error(), "unknown field") {
			t.Fatalf("validate = %v, want an unknown field error", err)
		}
	})
}

// TestLintFails makes sure the lint check can fail: a value the schema does not know is an error.
func TestLintFails(t *testing.T) {
	lint := action.NewLint()
	lint.Strict = true
	res := lint.Run([]string{chartDir}, values(t, "replicas: 3"))
	if len(res.Errors) == 0 {
		t.Fatal("lint accepted an unknown value")
	}
}
