// Package console is Projector's web console for operators: the
// projections of one topic with their versions, state, replicas and lag (a
// chart of the last minutes, sampled by the console itself), and the
// parked streams with the record each stopped at. Everything it shows
// comes from package ops, as projectorctl shows it.
//
// The console is read-only unless Config.AdminToken is set. Then an
// operator signs in with the token (a session cookie, HttpOnly and
// SameSite=Strict) and may retry or skip a parked stream; every such POST
// carries a CSRF token bound to the session, and the retry or skip is
// recorded through [ops.Client.Resolve] with who did it and why, as
// projectorctl parked retry|skip records it. A POST without a session or
// with a wrong CSRF token is answered 403 and changes nothing.
//
// Pages are rendered on the server with html/template (every dynamic value
// escaped; control characters and terminal escapes are shown as Go
// escapes, see [Clean]), charts are inline SVG ([Chart]), and the style
// sheet and a few lines of script for the auto-refresh are embedded: the
// console needs nothing from the network.
//
// Programs add pages of their own in the console's layout with
// [Console.Handle] and [Console.Render] (the billing example adds its
// balance groups). Run the sampler with [Console.Run]; serve the console
// with [Console.ServeHTTP] under Config.Prefix.
package console
