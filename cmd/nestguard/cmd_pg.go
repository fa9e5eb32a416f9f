package main

import "github.com/spf13/cobra"

func (a *app) pgCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pg",
		Short: "Back up and restore PostgreSQL: base backups, WAL archiving, point-in-time recovery",
		Long: `PostgreSQL clusters are protected by base backups ('nestguard pg backup')
and continuous WAL archiving (archive_command = 'nestguard pg archive-wal %p').
Together they allow 'nestguard pg restore' to any moment in the window that
'nestguard pg status' shows. See docs/postgres.md.`,
	}
	cmd.AddCommand(a.pgWALCommands()...)
	cmd.AddCommand(a.pgBackupCommands()...)
	return cmd
}
