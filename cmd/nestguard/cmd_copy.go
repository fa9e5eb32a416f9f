package main

import "github.com/spf13/cobra"

// copyCommand is filled in by its own issue's work.
func (a *app) copyCommand() *cobra.Command {
	return &cobra.Command{Use: "copy", Hidden: true}
}
