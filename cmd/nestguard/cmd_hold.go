package main

import "github.com/spf13/cobra"

// holdCommand is filled in by its own issue's work.
func (a *app) holdCommand() *cobra.Command {
	return &cobra.Command{Use: "hold", Hidden: true}
}
