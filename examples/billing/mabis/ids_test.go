package mabis_test

import (
	"errors"
	"testing"

	"github.com/projector-dev/projector/examples/billing/mabis"
)

func TestValidateMaLoID(t *testing.T) {
	for _, tc := range []struct {
		id    string
		valid bool
	}{
		{"41373559241", true}, // BDEW's example: odd 4+3+3+5+2=17, even 1+7+5+9+4=26, (10-(17+52)%10)%10 = 1
		{"50000000005", true},
		{"20000000040", true},  // check digit 0: 2 + 2*4 = 10
		{"41373559242", false}, // wrong check digit
		{"01373559241", false}, // starts with 0
		{"4137355924", false},  // 10 digits
		{"413735592411", false},
		{"4137355924A", false},
		{"41373X59241", false},
		{"", false},
	} {
		err := mabis.ValidateMaLoID(tc.id)
		if (err == nil) != tc.valid {
			t.Errorf("ValidateMaLoID(%q) = %v, want valid=%v", tc.id, err, tc.valid)
		}
		if err != nil && !errors.Is(err, mabis.ErrInvalidMaLoID) {
			t.Errorf("ValidateMaLoID(%q) = %v, not ErrInvalidMaLoID", tc.id, err)
		}
	}
}

func TestMaLoCheckDigit(t *testing.T) {
	for _, tc := range []struct {
		first10 string
		want    byte
	}{
		{"4137355924", '1'},
		{"5000000000", '5'}, // 5 at position 1 (odd): (10-5)%10
		{"5123869678", '1'}, // odd 5+2+8+9+7=31, even 1+3+6+6+8=24: 10-(31+48)%10
		{"2000000004", '0'},
		{"1000000001", '7'}, // 1 + 2*1 = 3: 10-3
	} {
		got, err := mabis.MaLoCheckDigit(tc.first10)
		if err != nil || got != tc.want {
			t.Errorf("MaLoCheckDigit(%q) = %q, %v; want %q", tc.first10, got, err, tc.want)
		}
	}
}

func TestValidateEIC(t *testing.T) {
	for _, tc := range []struct {
		code  string
		valid bool
	}{
		{"10YDE-RWENET---I", true}, // Amprion control area
		{"10YDE-EON------1", true}, // TenneT DE control area
		{"10YDE-VE-------2", true}, // 50Hertz control area
		{"10YDE-ENBW-----N", true}, // TransnetBW control area
		{"10Y1001A1001A82H", true}, // DE-LU bidding zone
		{"10YDE-RWENET---X", false},
		{"10YDE-RWENET---", false},
		{"10yDE-RWENET---I", false}, // lower case
		{"10YDE_RWENET---I", false},
		{"", false},
	} {
		err := mabis.ValidateEIC(tc.code)
		if (err == nil) != tc.valid {
			t.Errorf("ValidateEIC(%q) = %v, want valid=%v", tc.code, err, tc.valid)
		}
		if err != nil && !errors.Is(err, mabis.ErrInvalidEIC) {
			t.Errorf("ValidateEIC(%q) = %v, not ErrInvalidEIC", tc.code, err)
		}
	}
}

func TestEICCheckCharCoversEveryValue(t *testing.T) {
	// Some 15-character prefix yields each of the 37 check characters,
	// including '-' (value 36).
	seen := map[byte]bool{}
	for i := range 2000 {
		prefix := []byte("11Y000000000000")
		for j, n := 14, i; j >= 3 && n > 0; j, n = j-1, n/37 {
			prefix[j] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-"[n%37]
		}
		c, err := mabis.EICCheckChar(string(prefix))
		if err != nil {
			t.Fatal(err)
		}
		if err := mabis.ValidateEIC(string(prefix) + string(c)); err != nil {
			t.Fatal(err)
		}
		seen[c] = true
	}
	if len(seen) != 37 || !seen['-'] {
		t.Errorf("saw %d distinct check characters, want all 37 including '-'", len(seen))
	}
}

func TestValidateMarketPartnerID(t *testing.T) {
	for id, valid := range map[string]bool{"9900000000017": true, "990000000001": false, "99000000000A7": false} {
		if err := mabis.ValidateMarketPartnerID(id); (err == nil) != valid {
			t.Errorf("ValidateMarketPartnerID(%q) = %v, want valid=%v", id, err, valid)
		}
	}
}
