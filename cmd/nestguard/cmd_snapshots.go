package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/progress"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

func (a *app) snapshotsCommand() *cobra.Command {
	var f snapshot.Filter
	cmd := &cobra.Command{
		Use:   "snapshots",
		Short: "List snapshots",
		Long: `List the snapshots, oldest first.

A snapshot object that cannot be read (damaged on storage) is named on
stderr and the command exits 3: its time, host and paths are unknown, so
the list lacks it. While one is unreadable, 'latest' chooses nothing in any
command (it could be the newest): name snapshots by their id instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runSnapshots(cmd.Context(), f)
		},
	}
	cmd.Flags().StringVar(&f.Host, "host", "", "only snapshots of this host")
	cmd.Flags().StringArrayVar(&f.Tags, "tag", nil, "only snapshots with this tag (repeatable)")
	cmd.Flags().StringVar(&f.Kind, "kind", "", "only snapshots of this kind (files, postgres)")
	return cmd
}

// unreadableSnapshots names the snapshot objects that could not be read
// and makes the command exit 3: the list shown lacks them.
func unreadableSnapshots(a *app, unreadable []error) error {
	if len(unreadable) == 0 {
		return nil
	}
	for _, e := range unreadable {
		fmt.Fprintf(a.stderr, "error: %v\n", e)
	}
	what := "run 'nestguard verify'"
	if !slices.ContainsFunc(unreadable, func(e error) bool { return !errors.Is(e, backend.ErrUnavailable) }) {
		what = "the storage did not answer for them (nothing is known to be damaged): run the command again when the store answers"
	}
	return &partialError{fmt.Sprintf("%d snapshots could not be read and are left out (their time, host and paths are unknown): %s", len(unreadable), what)}
}

func (a *app) lsCommand() *cobra.Command {
	var o lsOptions
	cmd := &cobra.Command{
		Use:   "ls SNAPSHOT [PATH]",
		Short: "List the files in a snapshot",
		Long: `List the paths of a snapshot, or those at and below PATH (byte for byte).

` + pathsHelp,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.snapshot, o.prefix = args[0], "/"
			if len(args) == 2 {
				o.prefix = path.Clean("/" + args[1])
			}
			return a.runLs(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVarP(&o.long, "long", "l", false, "show mode, size and time")
	return cmd
}

func (a *app) diffCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "diff SNAPSHOT-A SNAPSHOT-B",
		Short: "Show what changed between two snapshots",
		Long: `Show the paths that differ from snapshot A to snapshot B:
  +  added        -  removed       M  content changed
  T  type changed U  only metadata (mode, owner, times) changed

` + pathsHelp,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runDiff(cmd.Context(), args[0], args[1])
		},
	}
}

// showPaths joins paths for text output, each as tree.Show gives it.
func showPaths(paths []string) string {
	shown := make([]string, len(paths))
	for i, p := range paths {
		shown[i] = tree.Show(p)
	}
	return strings.Join(shown, " ")
}

// pathsHelp says how ls and diff show paths that are not UTF-8.
const pathsHelp = `File names are bytes and are kept exactly, UTF-8 or not. Text output
shows a path as it is when it is valid UTF-8 of printable characters, and
otherwise as a Go double-quoted string in which \xNN is one raw byte:
"/data/Stra\xdfe.txt" (every other path starts with /). With --json, "path"
is the path when it is valid UTF-8; when not, "path" is that quoted form
without its quotes and "path_bytes" holds the exact bytes (base64).`

// runDiff prints what changed from snapshot refA to refB.
func (a *app) runDiff(ctx context.Context, refA, refB string) error {
	return a.withRepo(ctx, true, func(repo *repository.Repository) error {
		found, err := findSnapshots(ctx, repo, refA, refB)
		if err != nil {
			return err
		}
		sa, sb := found[0], found[1]
		changes := []tree.Change{}
		err = tree.Diff(ctx, repo, sa.Tree, sb.Tree, func(c tree.Change) error {
			if a.jsonOut {
				changes = append(changes, c)
			} else {
				a.printf("%-2s %s\n", c.Kind, tree.Show(c.Path))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if a.jsonOut {
			return a.printJSON(diffJSON{current(), sa.ID.String(), sb.ID.String(), changes})
		}
		return nil
	})
}

// lsOptions are what ls is asked to list.
type lsOptions struct {
	snapshot string
	prefix   string // a clean absolute path
	long     bool
}

// runLs lists the paths of o.snapshot at and below o.prefix.
func (a *app) runLs(ctx context.Context, o lsOptions) error {
	return a.withRepo(ctx, true, func(repo *repository.Repository) error {
		snaps, err := findSnapshots(ctx, repo, o.snapshot)
		if err != nil {
			return err
		}
		sn := snaps[0]
		prefix := o.prefix
		var out []lsEntryJSON
		found := prefix == "/"
		err = tree.Walk(ctx, repo, sn.Tree, func(p string, n *tree.Node) error {
			in := p == prefix || strings.HasPrefix(p, prefix+"/") || prefix == "/"
			if !in && !strings.HasPrefix(prefix, p+"/") {
				return tree.SkipDir
			}
			if !in {
				return nil
			}
			found = true
			e := lsEntryJSON{Type: n.Type, Size: n.Size, Mode: lsMode(n), MTime: fmtTime(n.ModTime)}
			e.Path, e.PathBytes = tree.ForJSON(p)
			if a.jsonOut {
				out = append(out, e)
			} else if o.long {
				a.printf("%-10s %8s %s %s\n", e.Mode, progress.Bytes(int64(n.Size)), e.MTime, tree.Show(p))
			} else {
				a.printf("%s\n", tree.Show(p))
			}
			return nil
		}, nil)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%s is not in snapshot %s", tree.Show(prefix), sn.ID.Short())
		}
		if a.jsonOut {
			return a.printJSON(out)
		}
		return nil
	})
}

// lsMode is n's type and mode as ls -l shows them ("drwxr-sr-x",
// "-rwsr-xr-x", "drwxrwxrwt"); fs.FileMode's String, used before, wrote
// set-user-ID as a leading "u" and no type (found by a hostile test).
func lsMode(n *tree.Node) string {
	b := []byte("----------")
	switch n.Type {
	case tree.Dir:
		b[0] = 'd'
	case tree.Symlink:
		b[0] = 'l'
	case tree.Dev:
		b[0] = 'b'
	case tree.CharDev:
		b[0] = 'c'
	case tree.FIFO:
		b[0] = 'p'
	case tree.Socket:
		b[0] = 's'
	}
	const rwx = "rwxrwxrwx"
	for i := range 9 {
		if n.Mode&(1<<(8-i)) != 0 {
			b[1+i] = rwx[i]
		}
	}
	special := func(at int, set bool, lower, upper byte) {
		if !set {
			return
		}
		if b[at] == '-' {
			b[at] = upper
		} else {
			b[at] = lower
		}
	}
	special(3, n.Mode&fs.ModeSetuid != 0, 's', 'S')
	special(6, n.Mode&fs.ModeSetgid != 0, 's', 'S')
	special(9, n.Mode&fs.ModeSticky != 0, 't', 'T')
	return string(b)
}

// runSnapshots lists the snapshots f matches.
func (a *app) runSnapshots(ctx context.Context, f snapshot.Filter) error {
	if err := snapshot.CheckTags(f.Tags); err != nil {
		return &usageError{fmt.Errorf("--tag: %w", err)}
	}
	if err := snapshot.CheckHost(f.Host); err != nil {
		return &usageError{fmt.Errorf("--host: %w", err)}
	}
	if k := f.Kind; k != "" && k != snapshot.KindFiles && k != snapshot.KindPostgres {
		return &usageError{fmt.Errorf("--kind %q: a snapshot is of kind %s or %s", k, snapshot.KindFiles, snapshot.KindPostgres)}
	}
	return a.withRepo(ctx, false, func(repo *repository.Repository) error {
		list, unreadable, err := snapshot.List(ctx, repo)
		if err != nil {
			return err
		}
		var shown []*snapshot.Snapshot
		for _, sn := range list {
			if f.Match(sn) {
				shown = append(shown, sn)
			}
		}
		if a.jsonOut {
			out := make([]snapshotJSON, 0, len(shown))
			for _, sn := range shown {
				paths, raw := tree.ForJSONList(sn.Paths)
				out = append(out, snapshotJSON{ID: sn.ID.String(), ShortID: sn.ID.Short(), Time: sn.Time, Kind: sn.Kind,
					Hostname: sn.Hostname, Username: sn.Username, Paths: paths, PathsBytes: raw, Tags: sn.Tags, Tree: sn.Tree, Summary: sn.Summary,
					Class: sn.Class, KeepUntil: sn.KeepUntil})
			}
			if err := a.printJSON(out); err != nil {
				return err
			}
			return unreadableSnapshots(a, unreadable)
		}
		tw := newTable(a.stdout, 2, 4)
		fmt.Fprintln(tw, "ID\tTime\tKind\tHost\tTags\tSize\tPaths")
		for _, sn := range shown {
			size := ""
			if sn.Summary != nil {
				size = progress.Bytes(sn.Summary.TotalBytes)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sn.ID.Short(), fmtTime(sn.Time), sn.Kind, sn.Hostname,
				strings.Join(sn.Tags, ","), size, showPaths(sn.Paths))
		}
		tw.Flush()
		a.printf("%d snapshots\n", len(shown))
		return unreadableSnapshots(a, unreadable)
	})
}
