package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/projector-dev/projector/examples/billing/api"
	"github.com/projector-dev/projector/examples/billing/mabis"
)

// TestMaLoOfAClosedMonthIsGone: a MaLo's detail answers 200 while the
// month is open and 410 Gone with the closure once it is closed; the
// group endpoints keep answering, their totals saying closed.
func TestMaLoOfAClosedMonthIsGone(t *testing.T) {
	f := newFixture(t, false)
	var malo string
	for id, err := range f.events.ListStreams(t.Context(), "process/"+f.tenant+"/") {
		if err != nil {
			t.Fatal(err)
		}
		if _, m, _, err := mabis.ParseStreamID(id); err == nil {
			malo = m
			break
		}
	}
	base := f.srv.URL + "/api/v1/months/2026-03"
	status, body, _ := get(t, http.MethodGet, base+"/malos/"+malo)
	var detail mabis.MaLoMonth
	if err := json.Unmarshal(body, &detail); status != http.StatusOK || err != nil || detail.MaLo != malo || len(detail.Days) == 0 || len(detail.Days[0].Wh) == 0 {
		t.Fatalf("open month: %d %.300s", status, body)
	}
	if status, _, _ := get(t, http.MethodGet, base+"/malos/12345678901"); status != http.StatusBadRequest {
		t.Errorf("an invalid MaLo-ID: %d, want 400", status)
	}
	if status, _, _ := get(t, http.MethodGet, base+"/malos/50000000005"); status != http.StatusNotFound {
		t.Errorf("an unknown MaLo: %d, want 404", status)
	}
	month, _ := mabis.ParseMonth("2026-03")
	_, err := f.reader.CloseMonth(t.Context(), month, mabis.CloseConfig{Now: func() time.Time { return time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	status, body, _ = get(t, http.MethodGet, base+"/malos/"+malo)
	var e api.Error
	if err := json.Unmarshal(body, &e); status != http.StatusGone || err != nil || e.Status != 410 || e.Closed == nil || e.Closed.State != "closed" ||
		e.Closed.Month != "2026-03" || !strings.Contains(e.Error, "closed") {
		t.Errorf("closed month: %d %s", status, body)
	}
	status, body, _ = get(t, http.MethodGet, base+"/balance-groups")
	var totals mabis.MonthTotals
	if err := json.Unmarshal(body, &totals); status != http.StatusOK || err != nil || totals.Closed == nil || len(totals.BalanceGroups) == 0 {
		t.Fatalf("balance groups of a closed month: %d %.300s", status, body)
	}
	if status, body, _ := get(t, http.MethodGet, base+"/balance-groups/"+totals.BalanceGroups[0].EIC+"/series?resolution=day"); status != http.StatusOK {
		t.Errorf("series of a closed month: %d %.300s", status, body)
	}
}
