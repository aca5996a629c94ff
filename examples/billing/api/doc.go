// Package api serves the billing read model as JSON over HTTP:
//
//	GET /api/v1/months/{month}/balance-groups
//	    every balance group of the month with its totals (mabis.MonthTotals)
//	GET /api/v1/months/{month}/balance-groups/{eic}/series?resolution=quarter-hour|hour|day
//	    one balance group's sum time series (mabis.Series); default quarter-hour
//	GET /api/v1/status
//	    the projection's status (Status): ops.Status, as projectorctl status
//	    shows it, and the runner replicas of this process
//
// Months are "YYYY-MM", balance groups their 16-character EIC. Errors are
// JSON objects {"error": "...", "status": N}: 400 for a malformed month, EIC
// or resolution (the message names the parameter), 404 for a balance group
// without data in the month or an unknown path, 405 for another method,
// 503 when Redis does not answer.
//
// # Versions of the read model
//
// Each read resolves the live version of the read model once and reads only
// that version, also while a rebuild switches it (see
// redischeckpoint.Store.Live). The response names the version it served in
// the header Projector-Read-Model ("billing" or "billing@v2") and in the
// field read_model of the balance groups and of the series.
//
// # Read your writes
//
// The read model lags behind the events (it is eventually consistent). A
// client that appended an event and wants to see it passes the event's
// position to the read, and the read waits until the live version has
// applied it:
//
//	GET /api/v1/months/2026-03/balance-groups?wait_stream=process/netz-musterstadt/51238696781-2026-03&wait_sequence=34&wait_timeout=2s
//
// wait_stream is the stream's ID and wait_sequence the event's sequence
// (both or neither); wait_timeout is a Go duration, default 5s, at most
// 30s. The read then serves the version whose cursor covered the event
// (Config.WaitFor, redischeckpoint.Store.WaitFor: one watcher per process
// checks every waiting request in one Redis round trip per 20 ms). When the
// read model has not applied it in time, the answer is 504 with the last
// sequence of the stream it has applied; when the stream is parked at or
// before the sequence (it will not be applied before an admin resolves it),
// 409 with the parked reason, at once. Both errors carry a "wait" object
// (WaitState) beside "error" and "status". Malformed wait parameters are
// 400 naming the parameter, and a server without Config.WaitFor answers 400
// "this server cannot wait".
package api
