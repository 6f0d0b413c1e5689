package lab

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/transit/registry"
)

// A write to the lab's registry file is notified; writes to other files of
// the state directory are not; the channel closes with its context.
func TestRegistryWatchNotifiesChanges(t *testing.T) {
	dir := t.TempDir()
	r := New(dir, slog.New(slog.NewTextHandler(io.Discard, nil))).Registry("w")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := r.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other.transit.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.UnenrollTenant(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no notification 30 s after the registry changed")
	}
	if err := r.SetTenantKey(ctx, "red", []byte{1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no notification 30 s after the second change")
	}
	cancel()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the channel was not closed 30 s after its context ended")
		}
	}
}

// Only events naming the lab's own files, or an overflow, count.
func TestRegistryWatchFiltersEvents(t *testing.T) {
	ev := func(mask uint32, name string) []byte {
		b := make([]byte, unix.SizeofInotifyEvent)
		padded := (len(name) + 1 + 15) / 16 * 16
		binary.NativeEndian.PutUint32(b[4:8], mask)
		binary.NativeEndian.PutUint32(b[12:16], uint32(padded))
		return append(b, append([]byte(name), make([]byte, padded-len(name))...)...)
	}
	names := [][]byte{[]byte("w.transit.json"), []byte("w.json")}
	for _, c := range []struct {
		events []byte
		want   bool
	}{
		{ev(unix.IN_MOVED_TO, "w.transit.json"), true},
		{append(ev(unix.IN_CLOSE_WRITE, "w.transit.json.lock"), ev(unix.IN_MOVED_TO, "w.json")...), true},
		{ev(unix.IN_CLOSE_WRITE, "w.transit.json.lock"), false},
		{append(ev(unix.IN_MOVED_TO, "other.transit.json"), ev(unix.IN_MOVED_TO, "w.transit.json.tmp")...), false},
		{ev(unix.IN_Q_OVERFLOW, ""), true},
		{ev(unix.IN_MOVED_TO, "w.json")[:20], true}, // truncated: assume a change
	} {
		if got := relevant(c.events, names); got != c.want {
			t.Errorf("relevant(%q) = %v, want %v", c.events, got, c.want)
		}
	}
}

var _ registry.Registry = (*Registry)(nil)
