package vault

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte("  s.fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VAULT_ADDR": "https://env:8200", "VAULT_TOKEN": "s.fromenv", "VAULT_CACERT": "/env/ca.pem"}
	tests := []struct {
		name    string
		cfg     Config
		env     map[string]string
		want    resolved
		wantErr bool
	}{
		{
			name: "defaults from env",
			env:  env,
			want: resolved{addr: "https://env:8200", token: "s.fromenv", mount: "transit", keyPrefix: "tencrypt-", caCert: "/env/ca.pem", timeout: 10 * time.Second},
		},
		{
			name: "config wins over env",
			cfg:  Config{Addr: "http://127.0.0.1:8200", Token: "s.cfg", Mount: "/tenants/transit/", KeyPrefix: "acme.", CACert: "/ca.pem", Timeout: "3s"},
			env:  env,
			want: resolved{addr: "http://127.0.0.1:8200", token: "s.cfg", mount: "tenants/transit", keyPrefix: "acme.", caCert: "/ca.pem", timeout: 3 * time.Second},
		},
		{
			name: "token file before VAULT_TOKEN",
			cfg:  Config{Addr: "http://h:1", TokenFile: tokFile},
			env:  env,
			want: resolved{addr: "http://h:1", token: "s.fromfile", mount: "transit", keyPrefix: "tencrypt-", caCert: "/env/ca.pem", timeout: 10 * time.Second},
		},
		{name: "no address", cfg: Config{Token: "t"}, wantErr: true},
		{name: "address without scheme", cfg: Config{Addr: "vault:8200", Token: "t"}, wantErr: true},
		{name: "address ftp", cfg: Config{Addr: "ftp://vault", Token: "t"}, wantErr: true},
		{name: "no token", cfg: Config{Addr: "http://h:1"}, wantErr: true},
		{name: "missing token file", cfg: Config{Addr: "http://h:1", TokenFile: filepath.Join(dir, "nope")}, env: env, wantErr: true},
		{name: "empty token file", cfg: Config{Addr: "http://h:1", TokenFile: empty}, env: env, wantErr: true},
		{name: "mount with ..", cfg: Config{Addr: "http://h:1", Token: "t", Mount: "a/../b"}, wantErr: true},
		{name: "mount with space", cfg: Config{Addr: "http://h:1", Token: "t", Mount: "a b"}, wantErr: true},
		{name: "prefix with slash", cfg: Config{Addr: "http://h:1", Token: "t", KeyPrefix: "a/b-"}, wantErr: true},
		{name: "prefix starting with dash", cfg: Config{Addr: "http://h:1", Token: "t", KeyPrefix: "-x"}, wantErr: true},
		{name: "bad timeout", cfg: Config{Addr: "http://h:1", Token: "t", Timeout: "soon"}, wantErr: true},
		{name: "negative timeout", cfg: Config{Addr: "http://h:1", Token: "t", Timeout: "-1s"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.resolve(func(k string) string { return tt.env[k] })
			if tt.wantErr {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("resolve: %v, want ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve: %v", err)
			}
			if got != tt.want {
				t.Fatalf("resolve = %+v\nwant       %+v", got, tt.want)
			}
		})
	}
}
