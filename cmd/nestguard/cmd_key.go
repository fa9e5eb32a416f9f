package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/secretfile"
)

func (a *app) keyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage the passphrases (key slots) that open the repository",
		Long: `Each key slot wraps the repository's master key under one passphrase, so
several people or systems can hold their own passphrase, and a passphrase is
rotated by adding a new slot and removing the old one. The last slot cannot
be removed. Removing a slot does not revoke its secret: see
'nestguard key remove --help'.

On S3, 'key add' and 'key remove' need the key administrator role's
permissions (docs/storage.md, "S3 roles"); 'key list' only the reader's.`,
	}
	var o keyAddOptions
	add := &cobra.Command{
		Use:   "add",
		Short: "Add a passphrase, or generate a key file",
		Long: `Add a key slot. The current passphrase opens the repository as usual; the
new one is read from --new-password-file, NESTGUARD_NEW_PASSWORD, or a
terminal prompt.

With --generate-key-file PATH, the new slot is opened by a random 256-bit
secret written to PATH (mode 0600, never printed) instead of a passphrase.
PATH must be new, in a directory that only its owner may write to (not
/tmp): whoever can write there could put their own file in its place.
A key file unlocks the repository in microseconds rather than the few tenths
of a second Argon2id takes on purpose for passphrases: use it for
PostgreSQL's archive_command and restore_command, which run once per WAL
segment (--key-file PATH or NESTGUARD_KEY_FILE). Protect it like the
passphrase; remove its slot with 'nestguard key remove' to revoke it.`,
		Example: `  nestguard key add --label dba
  nestguard key add --generate-key-file /etc/nestguard/wal.key --label archive_command
  chown postgres /etc/nestguard/wal.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runKeyAdd(cmd.Context(), o)
		},
	}
	add.Flags().StringVar(&o.newPassFile, "new-password-file", "", "read the new passphrase from this file")
	add.Flags().StringVar(&o.label, "label", "", "a note to tell this key slot apart")
	add.Flags().StringVar(&o.genKeyFile, "generate-key-file", "", "write a new random key file to this path (created, mode 0600) instead of asking for a passphrase")
	list := &cobra.Command{
		Use:   "list",
		Short: "List key slots",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runKeyList(cmd.Context())
		},
	}
	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a key slot (not the last one, nor the one in use)",
		Long: `Remove a key slot (not the last one, nor the one in use), named by its
ID or a prefix of at least 4 characters (see 'nestguard key list').

Removing a slot is not revocation: it never changes the master key. The
removed slot's passphrase or key file no longer opens the repository
through this repository's keys/, but whoever holds that secret and a copy
of the slot object (taken while it existed) recovers the master key and
can read every snapshot, past and future. Under Object Lock the slot
cannot be removed before its retention ends (every backup extends it), and
the slot object, including any old version of it the bucket keeps, stays
readable to anyone who can read the bucket until then.

To revoke a secret that may have leaked, re-key: create a new repository
('nestguard init', new master key) and copy every snapshot into it
('nestguard copy --from-repo OLD --to-repo NEW --all' re-encrypts
everything under the new key), move backups to it, and let the old
repository expire. See docs/security.md, "Revoking a passphrase or key
file". Needs the key administrator's S3 permissions (docs/storage.md).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runKeyRemove(cmd.Context(), args[0])
		},
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}

// keyAddOptions are what key add is asked to do: its flags.
type keyAddOptions struct {
	newPassFile, label, genKeyFile string
}

// runKeyAdd adds a passphrase slot, or a key file's slot with o.genKeyFile.
func (a *app) runKeyAdd(ctx context.Context, o keyAddOptions) error {
	if o.genKeyFile != "" {
		// Refused before the passphrase is asked for.
		if err := secretfile.CheckDir(o.genKeyFile); err != nil {
			return err
		}
	}
	return a.withRepo(ctx, false, func(repo *repository.Repository) error {
		repo.CleanStaleTemp(ctx)
		if o.genKeyFile != "" {
			// Create the file first, exclusively: never overwrite a key
			// file that may still be in use, never leave a slot whose
			// secret was not saved.
			f, err := secretfile.Create(o.genKeyFile)
			if err != nil {
				return err
			}
			kid, secret, err := repo.AddKeyFile(ctx, o.label)
			if err == nil {
				content := repository.FormatKeyFile(kid, secret)
				_, err = f.Write(content)
				clear(content)
				clear(secret)
			}
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(o.genKeyFile)
				return fmt.Errorf("generating key file: %w", err)
			}
			if a.jsonOut {
				return a.printJSON(keyAddJSON{current(), kid, o.genKeyFile})
			}
			a.printf("added key slot %s opened by key file %s\n", kid[:8], o.genKeyFile)
			return nil
		}
		pw, err := a.readPassphrase(passphraseSource{file: o.newPassFile, flag: "--new-password-file", env: "NESTGUARD_NEW_PASSWORD",
			fileFromConfig: a.originOf("new-password-file", o.newPassFile) == fromConfigFile}, "New passphrase: ", true)
		if err != nil {
			return err
		}
		kid, err := repo.AddKey(ctx, pw, o.label)
		clear(pw)
		if err != nil {
			return err
		}
		if a.jsonOut {
			return a.printJSON(keyAddJSON{versioned: current(), ID: kid})
		}
		a.printf("added key slot %s\n", kid[:8])
		return nil
	})
}

// runKeyList lists the key slots.
func (a *app) runKeyList(ctx context.Context) error {
	return a.withRepo(ctx, false, func(repo *repository.Repository) error {
		keys, err := repo.ListKeys(ctx)
		if err != nil {
			return err
		}
		if a.jsonOut {
			return a.printJSON(keys)
		}
		tw := newTable(a.stdout, 2, 4)
		fmt.Fprintln(tw, " \tID\tCreated\tUser\tHost\tLabel")
		for _, k := range keys {
			cur := " "
			if k.Current {
				cur = "*"
			}
			if k.Malformed != "" {
				fmt.Fprintf(tw, "!\t%s\t\t\t\tmalformed: %s\n", printable(k.ID[:min(8, len(k.ID))]), printable(k.Malformed))
				continue
			}
			// The descriptive fields are whatever was stored:
			// never let them reach a terminal raw.
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cur, printable(k.ID[:min(8, len(k.ID))]), fmtTime(k.Created), printable(k.Username), printable(k.Hostname), printable(k.Label))
		}
		return tw.Flush()
	})
}

// runKeyRemove removes key slot id.
func (a *app) runKeyRemove(ctx context.Context, id string) error {
	return a.withRepo(ctx, false, func(repo *repository.Repository) error {
		removed, err := repo.RemoveKey(ctx, id)
		if err != nil {
			return err
		}
		if a.jsonOut {
			return a.printJSON(keyRemoveJSON{current(), removed})
		}
		a.printf("removed key slot %s\n", printable(removed))
		return nil
	})
}

// printable escapes control characters, invalid UTF-8 and backslashes in
// s as Go's %q does, without the quotes, so that stored text cannot send
// escape sequences to a terminal. Plain text is returned as it is.
func printable(s string) string {
	q := strconv.Quote(s)
	q = q[1 : len(q)-1]
	return strings.ReplaceAll(q, `\"`, `"`)
}
