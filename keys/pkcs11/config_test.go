package pkcs11_test

import (
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/keys/pkcs11"
)

func TestTokenLabel(t *testing.T) {
	long := strings.Repeat("a", 30) + "-x"
	tests := []struct {
		name, prefix, tenant, want string
	}{
		{"fits", "tencrypt-", "blue", "tencrypt-blue"},
		{"exactly 32", "tencrypt-", strings.Repeat("b", 23), "tencrypt-" + strings.Repeat("b", 23)},
		{"hashed", "tencrypt-", long, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := pkcs11.TokenLabel(tt.prefix, tt.tenant)
			if len(got) > 32 {
				t.Fatalf("TokenLabel = %q: %d bytes, PKCS#11 allows 32", got, len(got))
			}
			if tt.want != "" && got != tt.want {
				t.Fatalf("TokenLabel = %q, want %q", got, tt.want)
			}
			if !strings.HasPrefix(got, tt.prefix) {
				t.Fatalf("TokenLabel = %q does not start with %q", got, tt.prefix)
			}
		})
	}
	// Two long names that share their first 14 characters get distinct labels.
	a, b := pkcs11.TokenLabel("tencrypt-", long), pkcs11.TokenLabel("tencrypt-", long+"y")
	if a == b || !strings.Contains(a, "~") {
		t.Fatalf("long names: %q and %q, want distinct hashed labels", a, b)
	}
}

func TestConfigStringHidesPIN(t *testing.T) {
	c := pkcs11.Config{Tenant: "blue", PIN: "s3cr3t-pin"}
	if s := c.String(); strings.Contains(s, "s3cr3t") || !strings.Contains(s, "redacted") {
		t.Fatalf("Config.String() = %q, want the PIN redacted", s)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv(pkcs11.EnvModule, "/env/module.so")
	t.Setenv(pkcs11.EnvTenant, "blue")
	t.Setenv(pkcs11.EnvPINFile, "/env/pin")
	t.Setenv(pkcs11.EnvPoolSize, "3")
	c, err := pkcs11.Config{Module: "/flag/module.so"}.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.Module != "/flag/module.so" || c.Tenant != "blue" || c.PINFile != "/env/pin" || c.PoolSize != 3 {
		t.Fatalf("FromEnv = %+v, want the set field kept and the others from the environment", c)
	}
	t.Setenv(pkcs11.EnvPoolSize, "zero")
	if _, err := (pkcs11.Config{}).FromEnv(); err == nil || !strings.Contains(err.Error(), pkcs11.EnvPoolSize) {
		t.Fatalf("FromEnv with a bad pool size: %v", err)
	}
}
