package telemetry_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"strings"

	"github.com/projector-dev/projector/telemetry"
)

// With no OTEL_* variables set nothing is exported, but metrics made through the
// MeterProvider are served by the Prometheus handler.
func Example() {
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "billing-projector"})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := tel.Shutdown(ctx); err != nil {
			log.Print(err)
		}
	}()

	applied, err := tel.MeterProvider().Meter("example").Int64Counter("projector.events.applied")
	if err != nil {
		log.Fatal(err)
	}
	applied.Add(ctx, 2)

	_, span := tel.TracerProvider().Tracer("example").Start(ctx, "apply batch")
	span.End()

	// Mount tel.PrometheusHandler() at /metrics; here it is called directly.
	rec := httptest.NewRecorder()
	tel.PrometheusHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(line, "projector_events_applied_total") {
			fmt.Print(line)
		}
	}
	// Output:
	// projector_events_applied_total{otel_scope_name="example",otel_scope_schema_url="",otel_scope_version=""} 2
}
