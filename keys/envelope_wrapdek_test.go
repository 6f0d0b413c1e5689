package keys_test

import (
	"errors"
	"testing"

	"github.com/tencrypt/tencrypt/keys"
)

func TestWrapDEKRoundTrip(t *testing.T) {
	ctx := t.Context()
	_, env, _ := world(t)
	var dek keys.DEK
	copy(dek[:], "a seed kube-apiserver drew.....!")
	wk, err := env.WrapDEK(ctx, "blue", "kms-v2", &dek)
	if err != nil {
		t.Fatal(err)
	}
	got, err := env.Unwrap(ctx, wk, "kms-v2", "test")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Zero()
	if !got.Equal(&dek) {
		t.Fatal("WrapDEK then Unwrap did not give the DEK back")
	}
	if _, err := env.Unwrap(ctx, wk, "file", "test"); !errors.Is(err, keys.ErrMismatch) {
		t.Fatalf("unwrap for another purpose: %v, want ErrMismatch", err)
	}
	if _, err := env.WrapDEK(ctx, "Not A Tenant", "kms-v2", &dek); !errors.Is(err, keys.ErrInvalidTenant) {
		t.Fatalf("invalid tenant: %v", err)
	}
}
