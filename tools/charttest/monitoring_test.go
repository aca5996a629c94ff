package charttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// The chart's alerts and dashboard: files/alerts.yaml rendered by templates/prometheusrule.yaml,
// files/dashboard.json shipped by templates/grafana-dashboard.yaml. The rules are checked with
// promtool (the tool pinned in tools/go.mod) and unit-tested with testdata/alerts_test.yaml; every
// metric name the rules and the dashboard select must be one the worker exports, as listed in
// files/exported-metrics.txt (kept true by the worker's TestExportedMetricsGolden), or an external
// one (kube-state-metrics, up).

const (
	dashboardFile       = chartDir + "/files/dashboard.json"
	exportedMetricsFile = chartDir + "/files/exported-metrics.txt"
	alertsTestFile      = "testdata/alerts_test.yaml"
	docsDir             = "../../docs"
)

// externalMetric reports the names the rules may use without the worker exporting them.
func externalMetric(name string) bool {
	return strings.HasPrefix(name, "kube_") || name == "up"
}

// allAlerts enables every alert, also those off by default.
const allAlerts = `metrics: {prometheusRule: {enabled: true, alerts: {targetsDown: {enabled: true}}}}`

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func (o *prometheusRule) validate() field.ErrorList {
	var errs field.ErrorList
	groups := field.NewPath("spec", "groups")
	if len(o.Spec.Groups) == 0 {
		errs = append(errs, field.Required(groups, ""))
	}
	for i, g := range o.Spec.Groups {
		for j, r := range g.Rules {
			p := groups.Index(i).Child("rules").Index(j)
			if (r.Alert == "") == (r.Record == "") {
				errs = append(errs, field.Invalid(p, r.Alert+r.Record, "exactly one of alert and record"))
			}
			if strings.TrimSpace(r.Expr) == "" {
				errs = append(errs, field.Required(p.Child("expr"), ""))
			}
		}
	}
	return errs
}

// rules renders the chart with the given values and returns its PrometheusRule.
func rules(t *testing.T, docs ...string) *prometheusRule {
	t.Helper()
	m := mustRender(t, values(t, docs...)).one(t, "PrometheusRule")
	if err := validate(m); err != nil {
		t.Fatalf("%s: %v\n%s", m, err, m.YAML)
	}
	return decodeAs[*prometheusRule](t, m)
}

func (o *prometheusRule) alerts() map[string]rule {
	out := map[string]rule{}
	for _, g := range o.Spec.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r
		}
	}
	return out
}

// promtool runs the promtool of tools/go.mod (go tool builds it once and caches it) in dir.
func promtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	tools, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", append([]string{"-C", tools, "tool", "promtool"}, args...)...)
	// go -C changes the directory of go itself; promtool resolves rule_files relative to the test
	// file's directory, and the files it is given are absolute.
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeRules(t *testing.T, path string, groups []ruleGroup) {
	t.Helper()
	b, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPrometheusRulePromtool: the rendered rules pass `promtool check rules` (PromQL, durations,
// label and annotation templates) and the unit tests of testdata/alerts_test.yaml (`promtool test
// rules`), which cover every alert.
func TestPrometheusRulePromtool(t *testing.T) {
	pr := rules(t, allAlerts)
	dir := t.TempDir()
	full := filepath.Join(dir, "rules-full.yaml")
	writeRules(t, full, pr.Spec.Groups)
	out, err := promtool(t, dir, "check", "rules", full)
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("promtool check rules: %s", strings.TrimSpace(out))

	// The unit tests compare labels only: the annotations are prose, checked above for syntax.
	groups := slices.Clone(pr.Spec.Groups)
	for i := range groups {
		groups[i].Rules = slices.Clone(groups[i].Rules)
		for j := range groups[i].Rules {
			groups[i].Rules[j].Annotations = nil
		}
	}
	writeRules(t, filepath.Join(dir, "rules.yaml"), groups)
	src, err := os.ReadFile(alertsTestFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = promtool(t, dir, "test", "rules", filepath.Join(dir, "alerts_test.yaml"))
	if err != nil {
		t.Fatalf("promtool test rules %s: %v\n%s", alertsTestFile, err, out)
	}
	t.Logf("promtool test rules: %s", strings.TrimSpace(out))

	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(src, &tests); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			fires[a.Alertname] = fires[a.Alertname] || len(a.ExpAlerts) > 0
		}
	}
	for name := range pr.alerts() {
		if !fires[name] {
			t.Errorf("%s has no unit test in %s in which it fires", name, alertsTestFile)
		}
	}
}

// TestPromtoolFails makes sure the promtool check can fail: a rule with broken PromQL is rejected.
func TestPromtoolFails(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeRules(t, bad, []ruleGroup{{Name: "bad", Rules: []rule{{Alert: "Bad", Expr: "sum by (x (projector_lag_records)"}}}})
	if out, err := promtool(t, dir, "check", "rules", bad); err == nil {
		t.Fatalf("promtool accepted broken PromQL:\n%s", out)
	}
}

// headingAnchors returns the GitHub anchors of a Markdown file's headings.
func headingAnchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	punct := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	for line := range strings.Lines(string(b)) {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			out[strings.ReplaceAll(punct.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return out
}

// TestPrometheusRuleValues: off by default; every alert has a severity, a summary, a description
// and a runbook link to a section that exists; the values reach the rules.
func TestPrometheusRuleValues(t *testing.T) {
	if r := mustRender(t, values(t)); len(r.byKind("PrometheusRule")) != 0 || len(r.byKind("ConfigMap")) != 0 {
		t.Errorf("the defaults render a PrometheusRule or a dashboard ConfigMap: %v", r.kinds())
	}
	pr := rules(t, allAlerts)
	want := []string{"ProjectorLagGrowing", "ProjectorLagSecondsHigh", "ProjectorStreamsParked", "ProjectorNoReadyReplicas",
		"ProjectorTargetsDown", "ProjectorPartitionsWithoutWorker", "ProjectorStateLost"}
	if got := slices.Sorted(maps.Keys(pr.alerts())); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("alerts %v, want %v", got, want)
	}
	const base = "https://github.com/projector-dev/projector/blob/main/docs/"
	for name, r := range pr.alerts() {
		if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
			t.Errorf("%s: severity %q", name, r.Labels["severity"])
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s", name, a)
			}
		}
		doc, anchor, _ := strings.Cut(strings.TrimPrefix(r.Annotations["runbook_url"], base), "#")
		if !strings.HasPrefix(r.Annotations["runbook_url"], base) || anchor == "" {
			t.Errorf("%s: runbook_url %q is not a section of %s", name, r.Annotations["runbook_url"], base)
		} else if !headingAnchors(t, filepath.Join(docsDir, doc))[anchor] {
			t.Errorf("%s: runbook_url %q: docs/%s has no section #%s", name, r.Annotations["runbook_url"], doc, anchor)
		}
		if strings.Contains(r.Expr, "{{") || strings.Contains(r.Expr, "<no value>") {
			t.Errorf("%s: expr not fully rendered: %s", name, r.Expr)
		}
	}
	if _, ok := rules(t, "metrics: {prometheusRule: {enabled: true}}").alerts()["ProjectorTargetsDown"]; ok {
		t.Error("ProjectorTargetsDown is rendered by default: it is for clusters without kube-state-metrics")
	}

	pr = rules(t, `metrics:
  prometheusRule:
    enabled: true
    labels: {release: kube-prometheus-stack}
    additionalAlertLabels: {team: billing}
    additionalAlertAnnotations: {dashboard: "https://grafana.example.com/d/projector-workers"}
    selector: 'cluster="eu1", projector_projection="billing"'
    runbookBaseURL: https://wiki.example.com/projector/
    alerts:
      lagSecondsHigh: {threshold: 42, for: 3m, severity: critical}
      stateLost: {enabled: false}`)
	if pr.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("labels: %v", pr.Labels)
	}
	alerts := pr.alerts()
	if _, ok := alerts["ProjectorStateLost"]; ok {
		t.Error("a disabled alert is rendered")
	}
	lag := alerts["ProjectorLagSecondsHigh"]
	if !strings.Contains(lag.Expr, `projector_lag_seconds{cluster="eu1", projector_projection="billing"}`) || !strings.Contains(lag.Expr, "> 42") ||
		lag.For != "3m" || lag.Labels["severity"] != "critical" {
		t.Errorf("ProjectorLagSecondsHigh ignores its values: %+v", lag)
	}
	for name, r := range alerts {
		if r.Labels["team"] != "billing" || r.Annotations["dashboard"] == "" || !strings.HasPrefix(r.Annotations["runbook_url"], "https://wiki.example.com/projector/") ||
			strings.Contains(r.Annotations["runbook_url"], "projector//") {
			t.Errorf("%s: additional labels, annotations or the runbook base are missing: %+v", name, r)
		}
	}
}

// TestGrafanaDashboardConfigMap: the dashboard ConfigMap carries the sidecar's label and the folder
// annotation, and the dashboard as it is in files/dashboard.json.
func TestGrafanaDashboardConfigMap(t *testing.T) {
	want, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		vals, label, value, folderKey, folder string
	}{
		{"metrics: {grafanaDashboard: {enabled: true}}", "grafana_dashboard", "1", "", ""},
		{"metrics: {grafanaDashboard: {enabled: true, label: dashboards, labelValue: projector, folder: Projections, folderAnnotation: k8s-sidecar-target-directory, namespace: monitoring}}",
			"dashboards", "projector", "k8s-sidecar-target-directory", "Projections"},
	} {
		m := mustRender(t, values(t, c.vals)).one(t, "ConfigMap")
		if err := validate(m); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		var cm struct {
			Metadata struct {
				Namespace   string            `json:"namespace"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Data map[string]string `json:"data"`
		}
		if err := yaml.Unmarshal([]byte(m.YAML), &cm); err != nil {
			t.Fatal(err)
		}
		if cm.Metadata.Labels[c.label] != c.value {
			t.Errorf("%s: label %s=%q, want %q", c.vals, c.label, cm.Metadata.Labels[c.label], c.value)
		}
		if c.folderKey != "" && cm.Metadata.Annotations[c.folderKey] != c.folder {
			t.Errorf("%s: folder annotation %v", c.vals, cm.Metadata.Annotations)
		}
		if c.folderKey == "" && len(cm.Metadata.Annotations) != 0 {
			t.Errorf("%s: annotations %v, want none", c.vals, cm.Metadata.Annotations)
		}
		if got := cm.Data["projector-workers.json"]; strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
			t.Errorf("%s: the ConfigMap's dashboard differs from %s", c.vals, dashboardFile)
		}
	}
}

// dashboard is the part of Grafana's dashboard model the checks read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// query is one PromQL expression of the rules or the dashboard, and where it is.
type query struct{ where, expr string }

// grafanaInterval are Grafana's interval variables, replaced by a duration before parsing. The
// dashboard's own variables ($projection, $group, $namespace) appear only inside label matchers'
// quoted regexes, which parse as they are.
var grafanaInterval = regexp.MustCompile(`\$\{?__(rate_interval|interval|range)\}?`)

// labelValues is a variable query: label_values(<selector>, <label>).
var labelValues = regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)

func (d dashboard) queries(t *testing.T) []query {
	t.Helper()
	var out []query
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			out = append(out, query{fmt.Sprintf("dashboard panel %q (%s)", p.Title, tg.RefID), grafanaInterval.ReplaceAllString(tg.Expr, "5m")})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("dashboard variable %s: query %q is not label_values(<selector>, <label>)", v.Name, v.Definition)
			continue
		}
		out = append(out, query{fmt.Sprintf("dashboard variable %s", v.Name), m[1]})
	}
	return out
}

// TestDashboardJSON: the dashboard decodes, takes its data source from a variable, has the
// projection and consumer group variables, and shows what the chart's README promises.
func TestDashboardJSON(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q", d.UID, d.Title)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	for name, typ := range map[string]string{"datasource": "datasource", "projection": "query", "group": "query", "namespace": "query"} {
		if vars[name] != typ {
			t.Errorf("variable %s: type %q, want %q", name, vars[name], typ)
		}
	}
	ids := map[int]bool{}
	uses := map[string]bool{}
	for _, p := range d.allPanels() {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q query %s: datasource %+v", p.Title, tg.RefID, tg.Datasource)
			}
			for _, v := range []string{"$projection", "$group"} {
				if strings.Contains(tg.Expr, "projector_") && !strings.Contains(tg.Expr, v) {
					t.Errorf("panel %q query %s does not filter by %s: %s", p.Title, tg.RefID, v, tg.Expr)
				}
			}
			for name := range metricNames(t, tg.Expr) {
				uses[name] = true
			}
		}
	}
	for _, m := range []string{"projector_events_applied_total", "projector_events_skipped_total", "projector_events_held_total",
		"projector_lag_records", "projector_lag_seconds", "projector_streams_parked", "projector_partitions",
		"messaging_process_duration_seconds_bucket", "projector_checkpoint_duration_seconds_bucket", "projector_rebalances_total",
		"projector_partition_restarts_total", "projector_build_info", "go_memstats_heap_inuse_bytes", "go_goroutines"} {
		if !uses[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}

// metricNames returns the metric names of every vector selector of a PromQL expression (Grafana's
// interval variables replaced), or fails the test when it does not parse.
func metricNames(t *testing.T, expr string) map[string]bool {
	t.Helper()
	names, err := selectorNames(grafanaInterval.ReplaceAllString(expr, "5m"))
	if err != nil {
		t.Errorf("%v\n%s", err, expr)
	}
	return names
}

func selectorNames(expr string) (map[string]bool, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	var unnamed bool
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" && m.Type.String() == "=" {
					name = m.Value
				}
			}
		}
		if name == "" {
			unnamed = true
		}
		names[name] = true
		return nil
	})
	if unnamed {
		return names, fmt.Errorf("a selector without a metric name (or with a regex one): it cannot be checked")
	}
	return names, nil
}

func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(exportedMetricsFile)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out[line] = true
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s lists no metric", exportedMetricsFile)
	}
	return out
}

// unknownMetrics returns, per query, the names that are neither exported nor external.
func unknownMetrics(t *testing.T, qs []query, exported map[string]bool) []string {
	t.Helper()
	var bad []string
	for _, q := range qs {
		names, err := selectorNames(q.expr)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: does not parse: %v\n\t%s", q.where, err, q.expr))
			continue
		}
		for _, n := range slices.Sorted(maps.Keys(names)) {
			if !exported[n] && !externalMetric(n) {
				bad = append(bad, fmt.Sprintf("%s uses %s, which the worker does not export (%s)", q.where, n, exportedMetricsFile))
			}
		}
	}
	return bad
}

// TestMonitoringMetricsExported: every metric the alert rules and the dashboard select is one the
// worker exports (files/exported-metrics.txt, checked against a running worker by the root module's
// worker.TestExportedMetricsGolden) or an external one (kube_*, up).
func TestMonitoringMetricsExported(t *testing.T) {
	var qs []query
	for name, r := range rules(t, allAlerts).alerts() {
		qs = append(qs, query{"alert " + name, r.Expr})
	}
	qs = append(qs, loadDashboard(t).queries(t)...)
	if len(qs) < 10 {
		t.Fatalf("only %d queries found", len(qs))
	}
	exported := exportedMetrics(t)
	for _, msg := range unknownMetrics(t, qs, exported) {
		t.Error(msg)
	}

	// The check can fail: a renamed metric and a misspelt one are caught, an external one is not.
	bad := unknownMetrics(t, []query{
		{"alert Renamed", `sum(projector_apply_duration_seconds_bucket{x="y"}) > 0`},
		{"dashboard panel \"Typo\" (A)", `rate(projector_events_aplied_total[5m]) and on () kube_pod_info and up`},
	}, exported)
	if len(bad) != 2 || !strings.Contains(bad[0], "alert Renamed uses projector_apply_duration_seconds_bucket") ||
		!strings.Contains(bad[1], `"Typo" (A) uses projector_events_aplied_total`) {
		t.Errorf("the check does not catch unknown names: %q", bad)
	}
}
