package index

import "github.com/nestguard/nestguard/internal/id"

// Base is a read-only set of blob locations under a Map (NewMapOver): the
// blobs of a large repository in a file rather than in memory (see
// internal/index/diskidx). A Base answers as a Map that was given its
// blobs would, except that it visits them in its own order. It must be
// safe for concurrent use and must not change.
type Base interface {
	// Len returns the number of distinct blobs.
	Len() int
	// Lookup returns the first location of blob bid.
	Lookup(bid id.ID) (Entry, bool)
	// AppendLocations appends every location of blob bid to es, the
	// first one first.
	AppendLocations(es []Entry, bid id.ID) []Entry
	// Has reports whether blob bid is known.
	Has(bid id.ID) bool
	// Each calls fn for the first location of every blob until fn returns
	// false, and reports whether it visited them all.
	Each(fn func(Entry) bool) bool
	// EachLocation calls fn for every location of every blob, a blob's
	// first location first, until fn returns false, and reports whether it
	// visited them all.
	EachLocation(fn func(Entry) bool) bool
	// Packs returns every distinct pack, in the order first seen.
	Packs() []id.ID
	// HasPack reports whether pack p holds a blob of the Base.
	HasPack(p id.ID) bool
	// MemoryBytes returns the bytes the Base holds in memory.
	MemoryBytes() int
	// Err returns the first error reading the Base (an I/O error, or
	// data that failed authentication), or nil. After one, a blob the
	// Base holds may have looked unknown (never the reverse).
	Err() error
}
