package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Watch implements registry.Registry with inotify on the state directory:
// a value is sent when the lab's state file or its registry file is
// replaced or written (both are replaced by rename, so IN_MOVED_TO; a
// plain write gives IN_CLOSE_WRITE). Events on other files (the lock, other
// labs) are ignored. The watch covers the directory, not the files, so it
// survives their replacement.
func (r *Registry) Watch(ctx context.Context) (<-chan struct{}, error) {
	if err := os.MkdirAll(r.m.stateDir, 0o755); err != nil {
		return nil, err
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch lab registry: inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, r.m.stateDir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_DELETE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch lab registry: %s: %w", r.m.stateDir, err)
	}
	// Non-blocking, so os.File reads go through the runtime poller and
	// Close wakes a blocked Read.
	f := os.NewFile(uintptr(fd), "inotify")
	names := [][]byte{[]byte(r.lab + ".transit.json"), []byte(r.lab + ".json")}
	ch := make(chan struct{}, 1)
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		defer close(ch)
		buf := make([]byte, 64*1024)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			if relevant(buf[:n], names) {
				select {
				case ch <- struct{}{}:
				default: // one pending value stands for all changes
				}
			}
		}
	}()
	return ch, nil
}

// relevant reports whether a batch of inotify events names one of names,
// or overflowed (events were lost: something may have changed).
func relevant(events []byte, names [][]byte) bool {
	for len(events) >= unix.SizeofInotifyEvent {
		// struct inotify_event: wd, mask, cookie, len, then len bytes of
		// NUL-padded name.
		mask := binary.NativeEndian.Uint32(events[4:8])
		end := unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(events[12:16]))
		if end > len(events) {
			return true
		}
		if mask&unix.IN_Q_OVERFLOW != 0 {
			return true
		}
		name := bytes.TrimRight(events[unix.SizeofInotifyEvent:end], "\x00")
		for _, want := range names {
			if bytes.Equal(name, want) {
				return true
			}
		}
		events = events[end:]
	}
	return false
}
