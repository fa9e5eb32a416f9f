package s3

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/nestguard/nestguard/internal/backend"
)

// Save implements backend.Save. It reads the data twice and holds none of
// it: a first pass checks the size and computes each part's checksums, the
// second uploads, and the server checks the upload against the checksums
// of the first pass, so data that changed in between is refused rather
// than stored.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	key, err := b.key(h)
	if err != nil {
		return err
	}
	if err := backend.CheckSave(ctx, h, size); err != nil {
		return err
	}
	mode, until := b.newRetention()
	start, err := rd.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("saving %s: finding the reader's position: %w", h, err)
	}
	// Every upload carries CRC32C (x-amz-checksum-crc32c), which costs
	// next to nothing and is what S3 checks; no Content-MD5, also not with
	// Object Lock: AWS takes "Content-MD5 or x-amz-checksum-*" for Object
	// Lock uploads, and MD5 is not FIPS 140-3 approved (GODEBUG=
	// fips140=only refuses it).
	parts, err := b.checksumParts(rd, size)
	if err != nil {
		return fmt.Errorf("saving %s: %w", h, err)
	}
	if _, err := rd.Seek(start, io.SeekStart); err != nil {
		return fmt.Errorf("saving %s: rewinding the data: %w", h, err)
	}
	var version string
	var echoed bool
	if len(parts) == 1 {
		version, echoed, err = b.putSingle(ctx, key, section(rd, start, size), parts[0], mode, until)
	} else {
		version, echoed, err = b.putMultipart(ctx, key, rd, start, parts, mode, until)
	}
	if err == nil && !echoed {
		// Without the checksum echoed, the store's 200 is all there is
		// (a gateway or proxy may answer it for data it dropped): look.
		b.log.Debug("the store did not echo the upload's checksum; checking that the object is there", "key", key)
		err = b.checkStored(ctx, key, version, size, parts)
	}
	if err != nil {
		return b.denied(err, "s3:PutObject", h, key, "saving %s", h)
	}
	b.remember(key, version)
	return nil
}

// part is one upload request's share of an object and its checksum.
type part struct {
	offset, size int64
	crc32c       string // base64, as the x-amz-checksum-crc32c header wants
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksumParts reads size bytes of rd, cut into parts of b.partSize,
// and fails unless rd holds exactly size bytes. Objects up to twice the
// part size are one part, uploaded in one request: packs end a little
// past 16 MiB, and as a multipart upload such a pack would cost four
// requests (create, two parts, complete) instead of one.
func (b *Backend) checksumParts(rd io.Reader, size int64) ([]part, error) {
	partSize := b.partSize
	if size <= min(2*b.partSize, maxPartSize) {
		partSize = max(size, 1)
	}
	var parts []part
	for off := int64(0); off < size || off == 0; off += partSize {
		p := part{offset: off, size: min(partSize, size-off)}
		crc := crc32.New(castagnoli)
		n, err := io.CopyN(crc, rd, p.size)
		if err == io.EOF {
			return nil, fmt.Errorf("the data is %d bytes, shorter than the %d announced", off+n, size)
		}
		if err != nil {
			return nil, fmt.Errorf("reading the data: %w", err)
		}
		p.crc32c = base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
		parts = append(parts, p)
		if size == 0 {
			break
		}
	}
	var one [1]byte
	switch n, err := io.ReadFull(rd, one[:]); {
	case n > 0:
		return nil, fmt.Errorf("the data is longer than the %d bytes announced", size)
	case err != io.EOF:
		return nil, fmt.Errorf("reading the data: %w", err)
	}
	return parts, nil
}

// errNotStored is an upload the store acknowledged without storing what
// was sent: the checksum it echoes differs, or the object is not there.
// It is not retried: the object's name may now be taken by what the
// store did keep, and a repeated conditional upload would take that for
// the object saved.
var errNotStored = errors.New("the store acknowledged the upload but did not store what was sent: check the store and any gateway or proxy before it")

// checkEcho compares the checksum a store echoes for an upload with the
// one sent; "" (not echoed) is left to checkStored.
func checkEcho(what, sent, echoed string) error {
	if echoed == "" || echoed == sent {
		return nil
	}
	return fmt.Errorf("%s: CRC32C %s was sent, the store answered %s: %w", what, sent, echoed, errNotStored)
}

// compositeCRC32C is the checksum S3 gives a multipart upload made with
// CRC32C part checksums: the CRC32C of the parts' checksums, and their
// number.
func compositeCRC32C(parts []part) string {
	crc := crc32.New(castagnoli)
	for _, p := range parts {
		raw, _ := base64.StdEncoding.DecodeString(p.crc32c)
		crc.Write(raw)
	}
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc.Sum32())) + fmt.Sprintf("-%d", len(parts))
}

// checkStored checks, for a store that did not echo an upload's
// checksum, that the object is there at its size (and with its checksum,
// if the store tells it).
func (b *Backend) checkStored(ctx context.Context, key, version string, size int64, parts []part) error {
	out, err := b.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &b.bucket, Key: &key, VersionId: optional(version), ChecksumMode: types.ChecksumModeEnabled})
	switch {
	case statusOf(err) == http.StatusNotFound:
		return fmt.Errorf("the object is not there after its upload: %w", errNotStored)
	case err != nil:
		return err
	case aws.ToInt64(out.ContentLength) != size:
		return fmt.Errorf("the object is %d bytes after an upload of %d: %w", aws.ToInt64(out.ContentLength), size, errNotStored)
	}
	want := parts[0].crc32c
	if len(parts) > 1 {
		if got := aws.ToString(out.ChecksumCRC32C); !strings.Contains(got, "-") {
			return nil // a full-object checksum, which nestguard does not compute
		}
		want = compositeCRC32C(parts)
	}
	return checkEcho("the stored object", want, aws.ToString(out.ChecksumCRC32C))
}

// putSingle uploads a whole object in one conditional PUT, and reports
// whether the store echoed its checksum (which it checked).
func (b *Backend) putSingle(ctx context.Context, key string, rd io.Reader, p part, mode types.ObjectLockMode, until *time.Time) (version string, echoed bool, err error) {
	out, err := b.client.PutObject(ctx, &awss3.PutObjectInput{
		Bucket:                    &b.bucket,
		Key:                       &key,
		Body:                      rd,
		ContentLength:             aws.Int64(p.size),
		ContentType:               aws.String("application/octet-stream"),
		ChecksumCRC32C:            aws.String(p.crc32c),
		IfNoneMatch:               aws.String("*"),
		ObjectLockMode:            mode,
		ObjectLockRetainUntilDate: until,
	})
	if err != nil {
		return "", false, err
	}
	got := aws.ToString(out.ChecksumCRC32C)
	if err := checkEcho("the upload", p.crc32c, got); err != nil {
		return "", false, err
	}
	return aws.ToString(out.VersionId), got != "", nil
}

// putMultipart uploads an object part by part and completes it only if no
// object of that name exists by then. The parts go up one after another:
// the repository already uploads several objects at once. Each part's
// echoed checksum is compared with the one sent, and the completion's
// with their composite.
func (b *Backend) putMultipart(ctx context.Context, key string, rd io.ReadSeeker, start int64, parts []part, mode types.ObjectLockMode, until *time.Time) (version string, echoed bool, err error) {
	created, err := b.client.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{
		Bucket:                    &b.bucket,
		Key:                       &key,
		ContentType:               aws.String("application/octet-stream"),
		ChecksumAlgorithm:         types.ChecksumAlgorithmCrc32c,
		ObjectLockMode:            mode,
		ObjectLockRetainUntilDate: until,
	})
	if err != nil {
		return "", false, err
	}
	id := created.UploadId
	completed := false
	defer func() {
		if err == nil || completed {
			return
		}
		// Parts of an unfinished upload are invisible but billed: drop
		// them, even when ctx is what ended the upload.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, aerr := b.client.AbortMultipartUpload(actx, &awss3.AbortMultipartUploadInput{Bucket: &b.bucket, Key: &key, UploadId: id}); aerr != nil {
			b.log.Warn("could not abort a failed multipart upload; a bucket lifecycle rule for incomplete uploads removes its parts", "key", key, "err", aerr)
		}
	}()
	done := make([]types.CompletedPart, 0, len(parts))
	for i, p := range parts {
		if err := ctx.Err(); err != nil {
			return "", false, err
		}
		up, err := b.client.UploadPart(ctx, &awss3.UploadPartInput{
			Bucket:         &b.bucket,
			Key:            &key,
			UploadId:       id,
			PartNumber:     aws.Int32(int32(i + 1)),
			Body:           section(rd, start+p.offset, p.size),
			ContentLength:  aws.Int64(p.size),
			ChecksumCRC32C: aws.String(p.crc32c),
		})
		if err != nil {
			return "", false, fmt.Errorf("part %d of %d: %w", i+1, len(parts), err)
		}
		if err := checkEcho(fmt.Sprintf("part %d of %d", i+1, len(parts)), p.crc32c, aws.ToString(up.ChecksumCRC32C)); err != nil {
			return "", false, err
		}
		done = append(done, types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: up.ETag, ChecksumCRC32C: aws.String(p.crc32c)})
	}
	out, err := b.client.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{
		Bucket:          &b.bucket,
		Key:             &key,
		UploadId:        id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done},
		IfNoneMatch:     aws.String("*"),
	})
	if err != nil {
		return "", false, err
	}
	completed = true
	got := aws.ToString(out.ChecksumCRC32C)
	if !strings.Contains(got, "-") {
		// Not echoed, or a full-object checksum, which nestguard does
		// not compute: checkStored looks.
		return aws.ToString(out.VersionId), false, nil
	}
	if err := checkEcho("the completed upload", compositeCRC32C(parts), got); err != nil {
		return "", false, err
	}
	return aws.ToString(out.VersionId), true, nil
}

// section returns n bytes of rd from offset off as a reader that the SDK
// can seek back to its start when it repeats a request.
func section(rd io.ReadSeeker, off, n int64) io.ReadSeeker {
	if ra, ok := rd.(io.ReaderAt); ok {
		return io.NewSectionReader(ra, off, n)
	}
	return &seekSection{rd: rd, off: off, n: n, dirty: true}
}

// seekSection is io.SectionReader for a reader without ReadAt.
type seekSection struct {
	rd     io.ReadSeeker
	off, n int64
	pos    int64
	dirty  bool // rd is not at off+pos
}

func (s *seekSection) Read(p []byte) (int, error) {
	if s.pos >= s.n {
		return 0, io.EOF
	}
	if s.dirty {
		if _, err := s.rd.Seek(s.off+s.pos, io.SeekStart); err != nil {
			return 0, err
		}
		s.dirty = false
	}
	if int64(len(p)) > s.n-s.pos {
		p = p[:s.n-s.pos]
	}
	n, err := s.rd.Read(p)
	s.pos += int64(n)
	if err == io.EOF && s.pos < s.n {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (s *seekSection) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += s.pos
	case io.SeekEnd:
		offset += s.n
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	s.pos, s.dirty = offset, true
	return offset, nil
}
