package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/atomicfile"
)

// writeFileAtomic writes data to path all or nothing, mode 0600 (see
// internal/atomicfile). With replace false it fails if path exists.
func writeFileAtomic(path string, data []byte, replace bool) error {
	return atomicfile.Write(path, data, atomicfile.Options{Perm: 0o600, Replace: replace})
}

// lockFile takes an exclusive flock on path+".lock", waiting until ctx is
// done. Every writer of the keyring holds it from reading the current file to
// renaming the new one, so concurrent writers in several processes serialise
// and none loses another's change.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keyring lock: %w", err)
	}
	delay := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("keyring lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for keyring lock %s: %w", f.Name(), ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
