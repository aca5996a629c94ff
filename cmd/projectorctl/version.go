package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/projector-dev/projector/buildinfo"
)

func newVersionCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print projectorctl's version, the commit it was built from and its Go version",
		Example: "  projectorctl version\n  projectorctl version -o json",
		Args:    exactArgs(0),
		// The version needs no connection settings: not even invalid ones
		// stop it.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(*cobra.Command, []string) error {
			info := buildinfo.Get()
			if o.output == "json" {
				enc := json.NewEncoder(o.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			_, err := fmt.Fprintf(o.stdout, "projectorctl %s\n", info)
			return err
		},
	}
}
