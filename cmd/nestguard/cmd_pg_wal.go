package main

import "github.com/spf13/cobra"

// pgWALCommands: archive-wal, restore-wal, status (to be written).
func (a *app) pgWALCommands() []*cobra.Command { return nil }
