package miniotest

// The test servers' minio-go clients (Client, RoleClient) read answers
// that S3-compatible stores give in a form minio-go does not parse through
// compatTransport, which hands minio-go the form AWS documents. nestguard's
// own S3 backend (aws-sdk-go-v2) needs no such help: its XML decoding does
// not check the answers' root element names.

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// compatTransport wraps next (nil: http.DefaultTransport) so that answers
// in the forms below reach minio-go as AWS gives them.
//
// One so far: versitygw answers GetObjectRetention with the root element
// <ObjectLockRetention> (the name of the element in its Object Lock
// configuration) where AWS S3 and MinIO use <Retention>; minio-go refuses
// that with "expected element type <Retention>", and every read of a
// retention failed.
func compatTransport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return compatTripper{next: next}
}

type compatTripper struct {
	next http.RoundTripper
}

// maxRetentionBody bounds the retention answers read whole; a real one is
// about 200 bytes.
const maxRetentionBody = 64 << 10

func (t compatTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || resp.StatusCode != http.StatusOK || !req.URL.Query().Has("retention") {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRetentionBody))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the retention answer: %w", err)
	}
	body = normalizeRetention(body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return resp, nil
}

// retentionXML is an object's retention as S3 answers it, under any root
// element name.
type retentionXML struct {
	XMLName         xml.Name
	Mode            string `xml:"Mode,omitempty"`
	RetainUntilDate string `xml:"RetainUntilDate,omitempty"`
}

// normalizeRetention returns a GetObjectRetention answer with the root
// element AWS uses, <Retention>. Answers already in that form, and
// answers that are not XML at all (minio-go then reports the parse
// error), are returned as they are.
func normalizeRetention(body []byte) []byte {
	var r retentionXML
	if err := xml.Unmarshal(body, &r); err != nil || r.XMLName.Local != "ObjectLockRetention" {
		return body
	}
	r.XMLName = xml.Name{Space: "http://s3.amazonaws.com/doc/2006-03-01/", Local: "Retention"}
	out, err := xml.Marshal(r)
	if err != nil {
		return body
	}
	return append([]byte(xml.Header), out...)
}
