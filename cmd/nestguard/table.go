package main

import (
	"bufio"
	"io"
	"text/tabwriter"
)

// table writes aligned columns (two spaces apart) to w through one
// buffer: a tabwriter alone writes each cell with a system call of its
// own (a list of 20,000 snapshots: 0.4 s of them).
type table struct {
	*tabwriter.Writer
	buf *bufio.Writer
}

// newTable returns a table over w; minwidth and tabwidth as tabwriter's.
func newTable(w io.Writer, minwidth, tabwidth int) *table {
	buf := bufio.NewWriter(w)
	return &table{Writer: tabwriter.NewWriter(buf, minwidth, tabwidth, 2, ' ', 0), buf: buf}
}

// Flush writes out the table.
func (t *table) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	return t.buf.Flush()
}
