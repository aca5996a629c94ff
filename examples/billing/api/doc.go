// Package api serves the billing read model as JSON over HTTP:
//
//	GET /api/v1/months/{month}/balance-groups
//	    every balance group of the month with its totals (mabis.MonthTotals)
//	GET /api/v1/months/{month}/balance-groups/{eic}/series?resolution=quarter-hour|hour|day
//	    one balance group's sum time series (mabis.Series); default quarter-hour
//	GET /api/v1/status
//	    the projection's status (Status), as the command's StatusFunc reports it
//
// Months are "YYYY-MM", balance groups their 16-character EIC. Errors are
// JSON objects {"error": "...", "status": N}: 400 for a malformed month, EIC
// or resolution (the message names the parameter), 404 for a balance group
// without data in the month or an unknown path, 405 for another method,
// 503 when Redis does not answer.
package api
