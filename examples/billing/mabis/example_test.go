package mabis_test

import (
	"fmt"

	"github.com/projector-dev/projector/examples/billing/mabis"
)

func ExampleValidateMaLoID() {
	fmt.Println(mabis.ValidateMaLoID("41373559241"))
	fmt.Println(mabis.ValidateMaLoID("41373559242"))
	c, _ := mabis.MaLoCheckDigit("4137355924")
	fmt.Printf("check digit of 4137355924: %c\n", c)
	// Output:
	// <nil>
	// mabis: invalid MaLo-ID "41373559242": check digit is 2, want 1
	// check digit of 4137355924: 1
}

func ExampleValidateEIC() {
	fmt.Println(mabis.ValidateEIC("10YDE-RWENET---I"))
	fmt.Println(mabis.ValidateEIC("10YDE-RWENET---X"))
	// Output:
	// <nil>
	// mabis: invalid EIC "10YDE-RWENET---X": check character is 'X', want 'I'
}

func ExampleDay_Slots() {
	for _, s := range []string{"2026-03-28", "2026-03-29", "2026-10-25"} {
		d, _ := mabis.ParseDay(s)
		fmt.Printf("%s: %d quarter hours, %d hours\n", d, d.Slots(), d.Hours())
	}
	// Output:
	// 2026-03-28: 96 quarter hours, 24 hours
	// 2026-03-29: 92 quarter hours, 23 hours
	// 2026-10-25: 100 quarter hours, 25 hours
}

func ExampleDay_SlotStart() {
	d, _ := mabis.ParseDay("2026-10-25")
	for _, q := range []int{0, 8, 12, 99} {
		start := d.SlotStart(q)
		fmt.Printf("slot %2d: %s UTC, %s local\n", q, start.Format("15:04"), start.In(mabis.Berlin()).Format("15:04 MST"))
	}
	// Output:
	// slot  0: 22:00 UTC, 00:00 CEST local
	// slot  8: 00:00 UTC, 02:00 CEST local
	// slot 12: 01:00 UTC, 02:00 CET local
	// slot 99: 22:45 UTC, 23:45 CET local
}

func ExampleMonth_Slots() {
	m, _ := mabis.ParseMonth("2026-03")
	d, _ := mabis.ParseDay("2026-03-30")
	fmt.Println(m.Slots(), "quarter hours;", d, "begins at slot", m.FirstSlot(d))
	// Output:
	// 2972 quarter hours; 2026-03-30 begins at slot 2780
}
