package loadgen

import (
	"fmt"
	"strings"

	"github.com/projector-dev/projector/examples/billing/mabis"
)

// BalanceGroup is one of the generated balance groups.
type BalanceGroup struct {
	EIC  string
	Name string
}

// Supplier is one of the generated suppliers and the balance groups it
// settles its MaLos in.
type Supplier struct {
	ID            string // 13-digit BDEW code number
	Name          string
	BalanceGroups []int // indexes into Market.BalanceGroups
	Weight        int   // share of MaLos, relative
}

// Market is the generated market: its balance groups and suppliers.
type Market struct {
	BalanceGroups []BalanceGroup
	Suppliers     []Supplier
}

// eic builds a balance group EIC "11Y<name padded with '-'><check>".
func eic(name string) string {
	first15 := "11Y" + name + strings.Repeat("-", 12-len(name))
	c, err := mabis.EICCheckChar(first15)
	if err != nil {
		panic(fmt.Sprintf("loadgen: balance group name %q: %v", name, err))
	}
	return first15 + string(c)
}

// DefaultMarket returns the market every generated month uses: six balance
// groups of four suppliers.
func DefaultMarket() Market {
	return Market{
		BalanceGroups: []BalanceGroup{
			{eic("NORDSTROM"), "Nordstrom Haushalt"},
			{eic("NORDSTROM-G"), "Nordstrom Gewerbe"},
			{eic("SUEDWATT"), "Suedwatt"},
			{eic("RHEINENERGIE"), "Rheinenergie Privat"},
			{eic("RHEINENERG-G"), "Rheinenergie Gewerbe"},
			{eic("HANSEPOWER"), "Hansepower"},
		},
		Suppliers: []Supplier{
			{ID: "9900000000017", Name: "Nordstrom Vertrieb GmbH", BalanceGroups: []int{0, 1}, Weight: 40},
			{ID: "9900000000024", Name: "Suedwatt AG", BalanceGroups: []int{2}, Weight: 20},
			{ID: "9900000000031", Name: "Rheinenergie Handel GmbH", BalanceGroups: []int{3, 4}, Weight: 30},
			{ID: "9900000000048", Name: "Hansepower eG", BalanceGroups: []int{5}, Weight: 10},
		},
	}
}
