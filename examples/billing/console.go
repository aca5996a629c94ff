package main

import (
	"github.com/projector-dev/projector/console"
	"github.com/projector-dev/projector/examples/billing/pages"
	"github.com/projector-dev/projector/ops"
)

// newConsole is the web console of the demo: the projection's status,
// lag and parked streams (package console, on the operations client) and
// the billing pages over the read model, with the MaLos' streams read from
// events (nil: no timeline).
func newConsole(o options, client *ops.Client, rm *readModel, events pages.EventReader) (*console.Console, error) {
	c, err := console.New(console.Config{Ops: client, Projections: []string{o.projection}, AdminToken: o.consoleToken,
		Logger: o.logger})
	if err != nil {
		return nil, err
	}
	c.AddLinks(pages.Links(c.Prefix())...)
	if err := pages.Register(pages.Config{Console: c, Reader: rm.reader, Month: o.month, Events: events}); err != nil {
		return nil, err
	}
	return c, nil
}
