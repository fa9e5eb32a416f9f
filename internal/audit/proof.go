package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/transparency-dev/merkle/proof"

	"github.com/nestguard/nestguard/internal/backend"
)

// Tree is the Merkle tree of a log's first records up to a checkpoint,
// kept in memory (every complete subtree's hash: two hashes a record) to
// prove that records are included in it. A report cites records with
// such proofs, which anyone holding the verifier key can check against
// the signed checkpoint (VerifyInclusion).
type Tree struct {
	cp *Checkpoint
	// levels[0] are the leaf hashes; levels[k][i] is the hash of the
	// complete subtree of 2^k leaves starting at leaf i<<k.
	levels [][][]byte
}

// Checkpoint is the signed checkpoint the tree is of.
func (t *Tree) Checkpoint() *Checkpoint { return t.cp }

// ReadTree calls fn, as Read does, with every record of the log up to
// checkpoint cp (from Verify or Checkpoint: already checked), in order,
// and returns their tree. The records must give cp's root: a log that
// changed since cp was checked is an error (run 'audit verify').
// Entries after cp are not read.
//
// The entries are read as Verify reads them (readEntries: batches read
// ahead in parallel), and their records opened on the reading
// goroutines; fn is called in log order, one call at a time, but not on
// the caller's goroutine.
func (l *Log) ReadTree(ctx context.Context, cp *Checkpoint, fn func(pos uint64, r *Record, err error) error) (*Tree, error) {
	if cp.Origin != origin(l.id) {
		return nil, fmt.Errorf("checkpoint of %q is not of log %s", cp.Origin, l.id)
	}
	all, err := entryStarts(ctx, l.be, l.id)
	if err != nil {
		return nil, err
	}
	n, _ := slices.BinarySearch(all, cp.Size) // the entries that start before cp's end
	leaves := make([][]byte, 0, cp.Size)
	handle := func(start uint64) backend.Handle {
		return backend.Handle{Type: backend.AuditFile, Name: entryName(l.id, start)}
	}
	notNext := func(start uint64) error {
		return fmt.Errorf("%s starts at %d, not where the entry before ends (%d): run 'nestguard audit verify'", handle(start), start, len(leaves))
	}
	err = readEntries(ctx, l.be, l.id, all[:n], readOptions{key: l.key}, func(starts []uint64, res []checked) error {
		for j := range res {
			c, start := &res[j], starts[j]
			if start != uint64(len(leaves)) {
				return notNext(start)
			}
			if c.err != nil {
				return fmt.Errorf("%w (run 'nestguard audit verify')", c.err)
			}
			if end := start + uint64(c.records()); end > cp.Size {
				return fmt.Errorf("%s ends at %d, past the checkpoint's size %d: run 'nestguard audit verify'", handle(start), end, cp.Size)
			}
			for i, o := range c.opened {
				leaves = append(leaves, c.leaf(i))
				if err := fn(start+uint64(i), o.r, o.err); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if uint64(len(leaves)) < cp.Size && n < len(all) {
		return nil, notNext(all[n])
	}
	return NewTree(cp, leaves)
}

// NewTree returns the tree of leaves (leaf hashes, in log order), which
// must give checkpoint cp's size and root.
func NewTree(cp *Checkpoint, leaves [][]byte) (*Tree, error) {
	if uint64(len(leaves)) != cp.Size {
		return nil, fmt.Errorf("the audit log has %d records up to the checkpoint of size %d: run 'nestguard audit verify'", len(leaves), cp.Size)
	}
	t := &Tree{cp: cp, levels: [][][]byte{leaves}}
	for lv := leaves; len(lv) > 1; {
		up := make([][]byte, len(lv)/2)
		for i := range up {
			up[i] = hasher.HashChildren(lv[2*i], lv[2*i+1])
		}
		t.levels = append(t.levels, up)
		lv = up
	}
	if root := t.root(); !bytes.Equal(root, cp.Root) {
		return nil, fmt.Errorf("the audit log's first %d records give root %x, not the checkpoint's %x: run 'nestguard audit verify'", cp.Size, root, cp.Root)
	}
	return t, nil
}

// root is the RFC 6962 root of the whole tree: the complete subtrees
// of the size's binary decomposition, hashed right to left.
func (t *Tree) root() []byte {
	size := t.cp.Size
	if size == 0 {
		return hasher.EmptyRoot()
	}
	var hs [][]byte // left to right
	var start uint64
	for k := len(t.levels) - 1; k >= 0; k-- {
		if size&(1<<k) != 0 {
			hs = append(hs, t.levels[k][start>>k])
			start += 1 << k
		}
	}
	acc := hs[len(hs)-1]
	for i := len(hs) - 2; i >= 0; i-- {
		acc = hasher.HashChildren(hs[i], acc)
	}
	return acc
}

// InclusionProof proves that the record at Position, whose stored
// (sealed) bytes hash to LeafHash, is in the tree of a checkpoint: Path is
// its RFC 6962 audit path. Hashes are hex. It is what a report embeds for
// each record it cites, and what 'audit verify --proof' checks.
type InclusionProof struct {
	Position uint64   `json:"position"`
	LeafHash string   `json:"leaf_hash"`
	Path     []string `json:"path"`
}

// Prove returns the inclusion proof of the record at pos.
func (t *Tree) Prove(pos uint64) (*InclusionProof, error) {
	nodes, err := proof.Inclusion(pos, t.cp.Size)
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		if int(id.Level) >= len(t.levels) || id.Index >= uint64(len(t.levels[id.Level])) {
			return nil, fmt.Errorf("inclusion proof of %d in %d: node %d/%d outside the tree", pos, t.cp.Size, id.Level, id.Index)
		}
		hashes[i] = t.levels[id.Level][id.Index]
	}
	path, err := nodes.Rehash(hashes, hasher.HashChildren)
	if err != nil {
		return nil, err
	}
	p := &InclusionProof{Position: pos, LeafHash: hex.EncodeToString(t.levels[0][pos]), Path: make([]string, len(path))}
	for i, h := range path {
		p.Path[i] = hex.EncodeToString(h)
	}
	return p, nil
}

// VerifyInclusion checks p against checkpoint cp (whose signature the
// caller checked): the leaf at p.Position of the tree of cp's size, with
// p's audit path, gives cp's root.
func VerifyInclusion(cp *Checkpoint, p *InclusionProof) error {
	leaf, err := hex.DecodeString(p.LeafHash)
	if err != nil || len(leaf) != hasher.Size() {
		return fmt.Errorf("record %d: leaf hash %q is not a hex SHA-256 hash", p.Position, p.LeafHash)
	}
	path := make([][]byte, len(p.Path))
	for i, s := range p.Path {
		if path[i], err = hex.DecodeString(s); err != nil || len(path[i]) != hasher.Size() {
			return fmt.Errorf("record %d: proof hash %d %q is not a hex SHA-256 hash", p.Position, i, s)
		}
	}
	if err := proof.VerifyInclusion(hasher, p.Position, cp.Size, leaf, path, cp.Root); err != nil {
		// The library's error prints both roots as byte lists.
		return fmt.Errorf("record %d is not in the checkpoint of size %d: its leaf hash and proof do not give the checkpoint's root", p.Position, cp.Size)
	}
	return nil
}
