package mabis_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/projector-dev/projector/examples/billing/mabis"
	"github.com/projector-dev/projector/framework"
)

const (
	testMaLo   = "41373559241"
	testEIC    = "11YNORDSTROM---3"
	otherEIC   = "11YSUEDWATT----B"
	testVendor = "9900000000017"
)

func day96(wh int64) mabis.DayValues {
	v := mabis.DayValues{MaLo: testMaLo, Day: "2026-03-02", Supplier: testVendor, BalanceGroup: testEIC, Wh: make([]int64, 96), Quality: strings.Repeat("M", 96)}
	for i := range v.Wh {
		v.Wh[i] = wh
	}
	return v
}

func event(t testing.TB, stream string, seq uint64, p mabis.Payload) framework.Event {
	t.Helper()
	d, err := mabis.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	return framework.Event{StreamID: stream, Sequence: seq, EventID: stream + "#" + string(rune('0'+seq)), Type: d.Type, SchemaVersion: d.SchemaVersion, Data: d.Data}
}

func TestDecodeNamesTheField(t *testing.T) {
	m := mustMonth(t, "2026-03")
	short := day96(10)
	short.Wh = short.Wh[:95]
	negative := day96(10)
	negative.Wh[17] = -5
	flag := day96(10)
	flag.Quality = strings.Repeat("M", 40) + "X" + strings.Repeat("M", 55)
	dst := day96(10)
	dst.Day = "2026-03-29" // 92 quarter hours
	otherMonth := day96(10)
	otherMonth.Day = "2026-04-02"
	badEIC := day96(10)
	badEIC.BalanceGroup = "11YNORDSTROM---4"
	for _, tc := range []struct {
		name  string
		p     mabis.Payload
		field string
	}{
		{"too few values", mabis.DayValuesReceived{DayValues: short}, "wh"},
		{"negative value", mabis.DayValuesReceived{DayValues: negative}, "wh[17]"},
		{"unknown flag", mabis.DayValuesReceived{DayValues: flag}, "quality[40]"},
		{"96 values on a 92 quarter-hour day", mabis.DayValuesReceived{DayValues: dst}, "wh"},
		{"day of another month", mabis.DayValuesReceived{DayValues: otherMonth}, "day"},
		{"bad balance group", mabis.DayValuesReceived{DayValues: badEIC}, "balance_group"},
		{"moved from itself", mabis.ValuesCorrected{DayValues: day96(1), MovedFrom: testEIC}, "moved_from"},
		{"bad MaLo", mabis.AssignmentBegun{MaLo: "41373559242", Supplier: testVendor, BalanceGroup: testEIC, ValidFrom: "2026-03-01"}, "malo"},
		{"missing supplier", mabis.AssignmentChanged{MaLo: testMaLo, BalanceGroup: testEIC, ValidFrom: "2026-03-10"}, "supplier"},
		{"change outside the month", mabis.AssignmentChanged{MaLo: testMaLo, Supplier: testVendor, BalanceGroup: testEIC, ValidFrom: "2026-02-10"}, "valid_from"},
		{"begun after the month", mabis.AssignmentBegun{MaLo: testMaLo, Supplier: testVendor, BalanceGroup: testEIC, ValidFrom: "2026-04-01"}, "valid_from"},
		{"bad end date", mabis.AssignmentEnded{MaLo: testMaLo, ValidFrom: "2026-03-32"}, "valid_from"},
		{"case ID with a slash", mabis.ClearingCaseOpened{MaLo: testMaLo, CaseID: "a/b"}, "case_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mabis.Decode(event(t, "process/t/"+testMaLo+"-2026-03", 1, tc.p), m)
			pe, ok := errors.AsType[*mabis.PayloadError](err)
			if !ok || pe.Field != tc.field || !errors.Is(err, mabis.ErrInvalidPayload) {
				t.Fatalf("Decode = %v, want a PayloadError naming %q", err, tc.field)
			}
			if !strings.Contains(err.Error(), tc.field+":") {
				t.Errorf("message %q does not name %s", err, tc.field)
			}
		})
	}
}

func TestDecodeRejectsWrongTypesAndVersions(t *testing.T) {
	m := mustMonth(t, "2026-03")
	e := event(t, "process/t/"+testMaLo+"-2026-03", 1, mabis.DayValuesReceived{DayValues: day96(1)})
	e.Data = []byte(`{"malo":"` + testMaLo + `","wh":"lots"}`)
	if _, err := mabis.Decode(e, m); err == nil || err.(*mabis.PayloadError).Field != "wh" {
		t.Errorf("wh as a string: %v, want an error naming wh", err)
	}
	e.SchemaVersion = 2
	if _, err := mabis.Decode(e, m); err == nil || err.(*mabis.PayloadError).Field != "schema_version" {
		t.Errorf("schema version 2: %v, want an error naming schema_version", err)
	}
	e.Type = "MeterExchanged"
	if p, err := mabis.Decode(e, m); p != nil || err != nil {
		t.Errorf("unknown type: %v, %v; want it ignored", p, err)
	}
}

// Every event type decodes through the event table into the value that was
// encoded (not a pointer to it), and names its MaLo.
func TestDecodeRoundTrip(t *testing.T) {
	m := mustMonth(t, "2026-03")
	for _, p := range []mabis.Payload{
		mabis.AssignmentBegun{MaLo: testMaLo, Supplier: testVendor, BalanceGroup: testEIC, ValidFrom: "2026-02-01"},
		mabis.AssignmentChanged{MaLo: testMaLo, Supplier: testVendor, BalanceGroup: otherEIC, ValidFrom: "2026-03-10"},
		mabis.AssignmentEnded{MaLo: testMaLo, ValidFrom: "2026-03-21"},
		mabis.DayValuesReceived{DayValues: day96(7)},
		mabis.ValuesCorrected{DayValues: day96(8), MovedFrom: otherEIC, Reason: "moved"},
		mabis.ClearingCaseOpened{MaLo: testMaLo, CaseID: "K-1", BalanceGroup: testEIC, Day: "2026-03-09", Reason: "values missing"},
		mabis.ClearingCaseResolved{MaLo: testMaLo, CaseID: "K-1", Resolution: "sent"},
	} {
		t.Run(p.EventType(), func(t *testing.T) {
			got, err := mabis.Decode(event(t, "process/t/"+testMaLo+"-2026-03", 1, p), m)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, p) {
				t.Errorf("Decode = %#v, want %#v", got, p)
			}
			if got.MaLoID() != testMaLo {
				t.Errorf("MaLoID = %q", got.MaLoID())
			}
		})
	}
}

func TestPayloadJSON(t *testing.T) {
	data, err := json.Marshal(mabis.ValuesCorrected{DayValues: mabis.DayValues{MaLo: testMaLo, Day: "2026-03-02", Supplier: testVendor, BalanceGroup: otherEIC, Wh: []int64{1, 2}, Quality: "MS"}, MovedFrom: testEIC})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"malo":"41373559241","day":"2026-03-02","supplier":"9900000000017","balance_group":"11YSUEDWATT----B","wh":[1,2],"quality":"MS","moved_from":"11YNORDSTROM---3"}`
	if string(data) != want {
		t.Errorf("JSON\n%s\nwant\n%s", data, want)
	}
}

func TestStreamID(t *testing.T) {
	m := mustMonth(t, "2026-03")
	id, err := mabis.StreamID("netz-a", testMaLo, m)
	if err != nil || id != "process/netz-a/41373559241-2026-03" {
		t.Fatalf("StreamID = %q, %v", id, err)
	}
	tenant, malo, got, err := mabis.ParseStreamID(id)
	if err != nil || tenant != "netz-a" || malo != testMaLo || got != m {
		t.Errorf("ParseStreamID = %q %q %v %v", tenant, malo, got, err)
	}
	for _, bad := range []string{"process/netz-a/41373559242-2026-03", "process/netz-a/41373559241", "process/netz-a/41373559241-2026-13", "order/netz-a/41373559241-2026-03"} {
		if _, _, _, err := mabis.ParseStreamID(bad); !errors.Is(err, mabis.ErrInvalidStreamID) {
			t.Errorf("ParseStreamID(%q) = %v", bad, err)
		}
	}
}
