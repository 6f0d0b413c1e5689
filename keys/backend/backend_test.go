package backend_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/keys/backend"
)

func TestOpenUnknownBackend(t *testing.T) {
	_, err := backend.Open(t.Context(), backend.Config{Backend: "nosuch"})
	if !errors.Is(err, backend.ErrUnknownBackend) {
		t.Fatalf("Open(nosuch): %v, want ErrUnknownBackend", err)
	}
	for _, n := range backend.Names() {
		if !strings.Contains(err.Error(), n) {
			t.Fatalf("error %q does not list valid backend %q", err, n)
		}
	}
}

func TestOpenLocalNeedsPath(t *testing.T) {
	_, err := backend.Open(t.Context(), backend.Config{Backend: "local"})
	if err == nil || !strings.Contains(err.Error(), "path") {
		t.Fatalf("Open(local) without a path: %v, want an error naming the missing path", err)
	}
}
