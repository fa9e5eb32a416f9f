package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// An entry is one append to the log: a write-once object
// audit/<log id>-<start> holding the sealed records appended (tree leaves
// start to start+count-1), the compact range of the tree after them (what
// the next writer needs to compute the next root without reading the
// whole log) and the signed checkpoint of the tree after them. Byte layout
// in docs/format.md ("Audit trail").
type entry struct {
	logID    string
	start    uint64
	records  [][]byte // sealed records, in log order
	frontier [][]byte // compact range [0, start+len(records))
	note     []byte   // the signed checkpoint
}

const (
	entryMagic = "NGAUDIT1"
	// maxEntryRecords bounds the records one entry holds.
	maxEntryRecords = 1 << 16
	// maxEntryLen bounds an entry object.
	maxEntryLen = 64 << 20
	// maxLogIDLen bounds a log id (a repository id: 64 hex digits).
	maxLogIDLen = 128
)

// hasher is RFC 6962's, with SHA-256.
var hasher = rfc6962.DefaultHasher

// rangeFactory makes compact ranges with RFC 6962 hashing.
var rangeFactory = &compact.RangeFactory{Hash: hashChildren}

// leafHash is the Merkle leaf hash of a sealed record: SHA-256(0x00 ||
// sealed bytes), so the tree is over what is stored, and checking it
// needs no key.
func leafHash(sealed []byte) []byte { return hasher.HashLeaf(sealed) }

// hashChildren is hasher.HashChildren, SHA-256(0x01 || l || r), with one
// allocation (the result) where the hasher takes four: Verify hashes a
// node or two per record.
func hashChildren(l, r []byte) []byte {
	if len(l) != sha256.Size || len(r) != sha256.Size {
		return hasher.HashChildren(l, r)
	}
	var b [1 + 2*sha256.Size]byte
	b[0] = rfc6962.RFC6962NodeHashPrefix
	copy(b[1:], l)
	copy(b[1+sha256.Size:], r)
	sum := sha256.Sum256(b[:])
	return sum[:]
}

// rootOf is the root of the tree a compact range from 0 with hashes gives
// (compact.Range.GetRootHash), without allocating: Verify computes one
// per entry. hashes must not be empty.
func rootOf(hashes [][]byte) [sha256.Size]byte {
	var root [sha256.Size]byte
	copy(root[:], hashes[len(hashes)-1])
	var b [1 + 2*sha256.Size]byte
	b[0] = rfc6962.RFC6962NodeHashPrefix
	for i := len(hashes) - 2; i >= 0; i-- {
		copy(b[1:], hashes[i])
		copy(b[1+sha256.Size:], root[:])
		root = sha256.Sum256(b[:])
	}
	return root
}

// entryName is the object name of log logID's entry starting at start:
// the log id, a dash and start in 20 decimal digits.
func entryName(logID string, start uint64) string {
	var d [20]byte
	for i := len(d) - 1; i >= 0; i-- {
		d[i] = byte('0' + start%10)
		start /= 10
	}
	return logID + "-" + string(d[:])
}

// parseEntryName splits an entry's object name; ok is false for any
// other name (the signing key's, a foreign object).
func parseEntryName(name string) (logID string, start uint64, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || len(name)-i-1 != 20 || i > maxLogIDLen {
		return "", 0, false
	}
	start, err := strconv.ParseUint(name[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return name[:i], start, true
}

func (e *entry) size() uint64 { return e.start + uint64(len(e.records)) }

func (e *entry) encode() []byte {
	var b bytes.Buffer
	b.WriteString(entryMagic)
	b.WriteByte(byte(len(e.logID)))
	b.WriteString(e.logID)
	b.Write(binary.BigEndian.AppendUint64(nil, e.start))
	b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(e.records))))
	for _, r := range e.records {
		b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(r))))
		b.Write(r)
	}
	b.WriteByte(byte(len(e.frontier)))
	for _, h := range e.frontier {
		b.Write(h)
	}
	b.Write(e.note)
	return b.Bytes()
}

var errEntry = errors.New("malformed audit log entry")

func decodeEntry(b []byte) (*entry, error) {
	bad := func(what string) (*entry, error) { return nil, fmt.Errorf("%w: %s", errEntry, what) }
	if len(b) > maxEntryLen {
		return bad("too large")
	}
	if !bytes.HasPrefix(b, []byte(entryMagic)) {
		return bad("no " + entryMagic + " magic")
	}
	b = b[len(entryMagic):]
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return bad("truncated log id")
	}
	e := &entry{logID: string(b[1 : 1+b[0]])}
	b = b[1+b[0]:]
	if len(b) < 12 {
		return bad("truncated header")
	}
	e.start = binary.BigEndian.Uint64(b)
	n := binary.BigEndian.Uint32(b[8:])
	b = b[12:]
	if n == 0 || n > maxEntryRecords {
		return bad(fmt.Sprintf("%d records", n))
	}
	if e.start > 1<<62 {
		return bad("start out of range")
	}
	e.records = make([][]byte, n)
	for i := range e.records {
		if len(b) < 4 {
			return bad("truncated record length")
		}
		l := binary.BigEndian.Uint32(b)
		if l == 0 || l > maxRecordLen || int(l) > len(b)-4 {
			return bad(fmt.Sprintf("record %d: bad length %d", i, l))
		}
		e.records[i] = b[4 : 4+l]
		b = b[4+l:]
	}
	if len(b) < 1 || int(b[0]) > 64 || len(b) < 1+int(b[0])*sha256.Size {
		return bad("truncated frontier")
	}
	e.frontier = make([][]byte, b[0])
	for i := range e.frontier {
		e.frontier[i] = b[1+i*sha256.Size : 1+(i+1)*sha256.Size]
	}
	e.note = b[1+len(e.frontier)*sha256.Size:]
	return e, nil
}

// Checkpoint is a signed statement of the log's tree: its size and root.
// Its text is the checkpoint format of transparency logs (origin line,
// decimal size, base64 root), signed in the note format of
// golang.org/x/mod/sumdb/note.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
	// Note is the whole signed note, as exported and stored.
	Note []byte
}

// origin is the first line of log logID's checkpoints.
func origin(logID string) string { return "nestguard audit log " + logID }

// keyName is the name of log logID's signing key in its notes.
func keyName(logID string) string {
	if len(logID) > 16 {
		logID = logID[:16]
	}
	return "nestguard-audit-" + logID
}

func checkpointText(logID string, size uint64, root []byte) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin(logID), size, base64.StdEncoding.EncodeToString(root))
}

// OpenCheckpoint checks the signature of a signed checkpoint note with v
// and parses it.
func OpenCheckpoint(msg []byte, v note.Verifier) (*Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unknown *note.UnverifiedNoteError
		if errors.As(err, &unknown) {
			return nil, fmt.Errorf("checkpoint is not signed by the audit key %s (forged, or signed by another log's key)", v.Name())
		}
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return parseCheckpointText(n.Text, msg)
}

func parseCheckpointText(text string, msg []byte) (*Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 || lines[0] == "" {
		return nil, errors.New("checkpoint: want an origin, a size and a root line")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: size %q: %w", lines[1], err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != sha256.Size {
		return nil, fmt.Errorf("checkpoint: root %q is not a base64 SHA-256 hash", lines[2])
	}
	return &Checkpoint{Origin: lines[0], Size: size, Root: root, Note: msg}, nil
}

// LogID returns the log id a checkpoint's origin names, "" if it is not
// an audit log checkpoint of nestguard.
func (c *Checkpoint) LogID() string {
	id, ok := strings.CutPrefix(c.Origin, origin(""))
	if !ok {
		return ""
	}
	return id
}

// ParseUnverified parses a checkpoint note without checking its signature:
// only to learn which log it belongs to (LogID) before verifying it.
func ParseUnverified(msg []byte) (*Checkpoint, error) {
	text, _, ok := bytes.Cut(msg, []byte("\n\n"))
	if !ok {
		return nil, errors.New("checkpoint: not a signed note (no blank line before the signatures)")
	}
	return parseCheckpointText(string(text)+"\n", msg)
}
