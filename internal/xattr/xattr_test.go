package xattr

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// A list that grows between the size asked and the call (ERANGE) is
// asked again; a file system without attributes has none.
func TestNames(t *testing.T) {
	long := make([]byte, 0, 1000)
	for len(long) < 900 {
		long = append(long, "user.a-long-attribute-name\x00"...)
	}
	calls := 0
	names, err := Names(func(buf []byte) (int, error) {
		calls++
		if calls == 2 && buf == nil {
			return len(long), nil
		}
		if len(buf) < len(long) {
			return 0, unix.ERANGE
		}
		return copy(buf, long), nil
	})
	if err != nil || len(names) != 34 || names[0] != "user.a-long-attribute-name" || calls != 3 {
		t.Errorf("grown list: %d names, %d calls, %v", len(names), calls, err)
	}
	if names, err := Names(func([]byte) (int, error) { return 0, unix.ENOTSUP }); names != nil || err != nil {
		t.Errorf("no support: %v %v", names, err)
	}
	names, err = Names(func(buf []byte) (int, error) { return copy(buf, "user.x\x00security.selinux\x00"), nil })
	if !slices.Equal(names, []string{"user.x", "security.selinux"}) || err != nil {
		t.Errorf("names %q %v", names, err)
	}
	v, err := Value(func(buf []byte) (int, error) { return copy(buf, "val"), nil })
	if string(v) != "val" || err != nil || cap(v) > 8 {
		t.Errorf("value %q (cap %d) %v", v, cap(v), err)
	}
}
