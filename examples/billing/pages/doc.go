// Package pages adds the billing example's pages to the web console
// (package console), for settlement users:
//
//	{prefix}billing/?month=YYYY-MM
//	    the balance groups of a month with their totals
//	{prefix}billing/groups/{eic}?month=YYYY-MM&resolution=quarter-hour|hour|day
//	    a group's curve: energy and substitute share as charts
//	{prefix}billing/groups/{eic}/series.csv?month=...&resolution=...
//	    the same series as CSV
//	{prefix}billing/malo?month=YYYY-MM&malo={MaLo-ID}
//	    a MaLo's month: assignments and days from the read model, and its
//	    stream's events (assignments, values, corrections, clearing cases)
//	    when an event store is configured
//
// They read the read model through mabis.Reader, the queries the billing
// API serves (each request resolves the live version once and names it).
// Domain times are German local time (Europe/Berlin): a month of a clock
// change has 2,972 (March) or 2,980 (October) quarter hours.
package pages
