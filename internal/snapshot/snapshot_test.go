package snapshot

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/id"
)

func TestFindWithUnreadable(t *testing.T) {
	old := &Snapshot{ID: id.Hash([]byte("old")), Time: time.Unix(1, 0), Kind: KindFiles}
	bad := &Unreadable{ID: id.Hash([]byte("bad")), Err: errors.New("object corrupted")}
	list, unreadable := []*Snapshot{old}, []error{bad}

	for _, f := range []Filter{{}, {Kind: KindPostgres}, {Host: "h"}} {
		_, err := Find(list, unreadable, "latest", f)
		if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), bad.ID.Short()) {
			t.Errorf("latest %+v with an unreadable snapshot: %v", f, err)
		}
	}
	if sn, err := Find(list, unreadable, old.ID.String()[:8], Filter{}); err != nil || sn != old {
		t.Errorf("readable snapshot by id: %v, %v", sn, err)
	}
	if _, err := Find(list, unreadable, bad.ID.String()[:8], Filter{}); !errors.Is(err, ErrUnreadable) {
		t.Errorf("unreadable snapshot by id: %v", err)
	}
	if sn, err := Find(list, nil, "latest", Filter{}); err != nil || sn != old {
		t.Errorf("latest without unreadable snapshots: %v, %v", sn, err)
	}
	if sn := Newest(list, Filter{Kind: KindFiles}); sn != old {
		t.Errorf("Newest = %v", sn)
	}
}

// TestCheckTags: a tag (and a host name) is printable UTF-8 text, as a
// snapshot stores it and a filter finds it again; a log line or a
// terminal shows it as it is.
func TestCheckTags(t *testing.T) {
	for _, tc := range []struct {
		tag string
		ok  bool
	}{
		{"nightly", true}, {"année-2026", true}, {"keep\xfe", false}, {"", false}, {"a\nb", false}, {"\x1b[31mred", false},
	} {
		if err := CheckTags([]string{"x", tc.tag}); (err == nil) != tc.ok {
			t.Errorf("CheckTags(%q): %v", tc.tag, err)
		}
		if err := CheckHost(tc.tag); (err == nil) != (tc.ok || tc.tag == "") {
			t.Errorf("CheckHost(%q): %v", tc.tag, err)
		}
	}
}
