package s3

import (
	"fmt"
	"io/fs"
	"net/http"

	"github.com/nestguard/nestguard/internal/backend"
)

// The roles docs/storage.md ("S3 roles") defines, each an IAM policy: the
// S3 permissions one kind of nestguard user needs and no more. A refused
// request names the role whose policy grants what was refused.
const (
	RoleReader      = "restore/verify reader"
	RoleWriter      = "backup writer"
	RoleHoldOfficer = "hold officer"
	RoleKeyAdmin    = "key administrator"
	RoleOperator    = "prune/retention operator"
)

// roleFor names the role (or roles) whose policy grants action on an
// object of type t, for messages.
func roleFor(action string, t backend.FileType) string {
	role := func(r string) string { return "the " + r + " role" }
	switch action {
	case "s3:PutObjectLegalHold":
		return role(RoleHoldOfficer)
	case "s3:DeleteObject", "s3:DeleteObjectVersion":
		if t == backend.KeyFile {
			return role(RoleKeyAdmin)
		}
		return role(RoleOperator)
	case "s3:PutObject":
		switch t {
		case backend.KeyFile, backend.ConfigFile:
			return role(RoleKeyAdmin)
		case backend.HoldFile:
			return role(RoleHoldOfficer)
		case backend.CandidateFile, backend.LockFile:
			return role(RoleOperator)
		case backend.ExpiryFile:
			return role(RoleOperator) + " (or " + role(RoleWriter) + ", as copy's destination)"
		case backend.AuditFile:
			return role(RoleReader) + " (and so every role: every command appends to the audit log)"
		}
		return role(RoleWriter)
	case "s3:PutObjectRetention":
		switch t {
		case backend.HoldFile:
			return role(RoleHoldOfficer)
		case backend.CandidateFile, backend.LockFile:
			return role(RoleOperator)
		}
		return role(RoleWriter) + " (and " + role(RoleOperator) + ")"
	}
	return role(RoleReader) + " (and so every role)"
}

// forbidden reports whether err is S3 refusing a request (403).
func forbidden(err error) bool {
	return statusOf(err) == http.StatusForbidden
}

// denied is wrap for an operation on h (object key) that needs the S3
// permission action: a refusal names the operation, the permission, the
// key and the role that grants it, and wraps fs.ErrPermission. Other
// errors are wrap's.
func (b *Backend) denied(err error, action string, h backend.Handle, key string, format string, args ...any) error {
	if !forbidden(err) {
		return b.wrap(err, format, args...)
	}
	msg := fmt.Sprintf(format, args...) + " (" + b.location + ")"
	return &opError{msg: msg, err: fmt.Errorf("%w: S3 refused %s on %s, which %s grants (docs/storage.md, \"S3 roles\"): check the credentials this runs with%s and the policy attached to them (%v)",
		fs.ErrPermission, action, key, roleFor(action, h.Type), b.credentials(), err)}
}

// readAction is the permission reading an object needs: on a versioned
// bucket nestguard reads a pinned version.
func (b *Backend) readAction() string {
	if b.versioned {
		return "s3:GetObjectVersion"
	}
	return "s3:GetObject"
}

// listAction is the permission listing objects needs.
func (b *Backend) listAction() string {
	if b.versioned {
		return "s3:ListBucketVersions"
	}
	return "s3:ListBucket"
}

// deleteAction is the permission Remove needs: on a versioned bucket it
// deletes the version nestguard wrote.
func (b *Backend) deleteAction() string {
	if b.versioned {
		return "s3:DeleteObjectVersion"
	}
	return "s3:DeleteObject"
}
