package main

import "github.com/projector-dev/projector/internal/safetext"

// safeText returns s fit to print within one line of a terminal
// (safetext.Line). Data shown in text output (stream and event IDs, types,
// reasons, errors, replica IDs) comes from Redis and Kafka, written by
// anyone who can write there; printed raw, an escape sequence in it could
// clear the screen, rewrite what is shown, or forge a row of a table. JSON
// output does not use it: encoding/json escapes.
func safeText(s string) string { return safetext.Line(s) }
