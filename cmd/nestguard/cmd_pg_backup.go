package main

import "github.com/spf13/cobra"

// pgBackupCommands: backup, restore (to be written).
func (a *app) pgBackupCommands() []*cobra.Command { return nil }
