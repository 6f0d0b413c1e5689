package keystest_test

import (
	"testing"

	"github.com/tencrypt/tencrypt/keys/keystest"
)

// TestMemory runs the conformance suite against the in-memory fake, which
// also checks that the suite passes a correct backend.
func TestMemory(t *testing.T) {
	keystest.Run(t, keystest.NewMemory("", nil).Harness())
}
