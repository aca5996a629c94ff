// Package charttest checks the Helm chart in deploy/helm/projector offline: helm lint --strict
// (Helm's own lint code) for the default values and every ci/*-values.yaml, a client-only render
// of each whose manifests are decoded strictly with client-go's scheme (an unknown or duplicate
// field fails) and checked for what the API server would reject, structural checks of the custom
// resources that are not in the scheme (KEDA ScaledObject and TriggerAuthentication, Prometheus
// Operator ServiceMonitor), and unit tests of the templates' behaviour.
//
// It lives in the tools module so that Helm and client-go stay out of the root go.mod; the root
// `go test ./...` does not reach it, scripts/test.sh runs it with `go -C tools test ./charttest`.
package charttest
