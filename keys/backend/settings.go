package backend

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/tencrypt/tencrypt/keys/local"
	"github.com/tencrypt/tencrypt/keys/pkcs11"
)

// DefaultBackend is the backend of a configuration that names none.
const DefaultBackend = local.Name

// EnvConfigFile names the YAML configuration file when Sources.File is
// empty.
const EnvConfigFile = "TENCRYPT_CONFIG"

// Settings is the whole configuration of a key client (the CLI, the agent, a
// CSI driver, the KMS plugin): the backend's Config, flattened at the top of
// the file, and the audit log. docs/KEYS.md lists the fields.
type Settings struct {
	Config
	// AuditLog is the JSON-lines file every unwrap and rewrap is recorded in.
	AuditLog string `json:"audit_log,omitempty"`
}

// ScopedTenant is the tenant a tenant-scoped configuration names (a local
// keyring opened with one tenant's access key, a PKCS#11 token of one
// tenant), or "".
func (c Config) ScopedTenant() string {
	switch c.Backend {
	case local.Name, "":
		return c.Local.Tenant
	case pkcs11.Name:
		return c.PKCS11.Tenant
	}
	return ""
}

// PassphrasePrompt says whether the configuration opens a local keyring
// with nothing to unlock it, so that an interactive caller should ask for
// the passphrase (and give it with SetPassphrase); prompt names the keyring.
func (c Config) PassphrasePrompt() (prompt string, ask bool) {
	l := c.Local
	if c.Backend != local.Name || l.Path == "" || l.KeyFile != "" || l.PassphraseFile != "" || len(l.Passphrase) != 0 || l.TenantKeyFile != "" {
		return "", false
	}
	return "Passphrase for " + l.Path + ": ", true
}

// SetPassphrase gives the passphrase PassphrasePrompt asked for; Open
// zeroes it.
func (c *Config) SetPassphrase(b []byte) { c.Local.Passphrase = b }

// HasKeyringFile says whether the configuration names a keyring file of
// its own that the commands manage (the local backend: keys init creates it,
// keys migrate rewrites it); other backends keep their keys elsewhere.
func (c Config) HasKeyringFile() bool { return c.Backend == local.Name || c.Backend == "" }

// AccessKeyFile is the file a new tenant's access key is written to (the
// local backend), or "" for a backend without access keys.
func (c Config) AccessKeyFile(tenant string) string {
	if !c.HasKeyringFile() {
		return ""
	}
	return c.Local.AccessKeyPath(tenant)
}

// Field is one setting of Settings reachable from a command-line flag and an
// environment variable. Fields are derived from the json tags of Config, so a
// backend that adds its section there gets --<section>-<field> flags and
// TENCRYPT_<SECTION>_<FIELD> variables with no other change.
type Field struct {
	// Flag is the flag's name without dashes; "" for secrets, which come
	// only from the environment (a flag is visible in ps).
	Flag string
	// Env is the environment variable.
	Env string
	// File is the dotted name in the configuration file; "" for secrets.
	File string
	// Bool is set for a boolean setting.
	Bool bool
	// Help is one line for the flag's help.
	Help string

	index []int // field path in Settings
	kind  reflect.Kind
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

// Fields lists every setting of Settings.
func Fields() []Field {
	var out []Field
	add := func(path []string, idx []int, kind reflect.Kind, secret bool) {
		f := Field{
			Env:   "TENCRYPT_" + strings.ToUpper(strings.Join(path, "_")),
			File:  strings.Join(path, "."),
			Bool:  kind == reflect.Bool,
			index: idx,
			kind:  kind,
		}
		if !secret {
			f.Flag = strings.ReplaceAll(strings.Join(path, "-"), "_", "-")
			f.Help = fmt.Sprintf("config %s, env %s", f.File, f.Env)
		} else {
			f.File = ""
		}
		switch f.Flag {
		case "backend":
			f.Help = "key backend, one of: " + strings.Join(Names(), ", ") + " (default " + DefaultBackend + "; " + f.Help + ")"
		case "audit-log":
			f.Help = "JSON-lines audit log of every unwrap and rewrap (default " + DefaultAuditLog() + "; " + f.Help + ")"
		}
		out = append(out, f)
	}
	var walk func(t reflect.Type, path []string, idx []int)
	walk = func(t reflect.Type, path []string, idx []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			fi := append(append([]int{}, idx...), i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type, path, fi)
				continue
			}
			name := jsonName(f)
			kind := f.Type.Kind()
			if name == "-" {
				// Secrets (a passphrase, a token, a PIN): environment only,
				// never a flag (visible in ps) or the file.
				if len(path) > 0 && (kind == reflect.String || kind == reflect.Slice && f.Type.Elem().Kind() == reflect.Uint8) {
					add(append(path, strings.ToLower(f.Name)), fi, kind, true)
				}
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if f.Tag.Get("tencrypt") == "file-only" {
				// A setting that weakens security (turning TLS
				// verification off) is written down in the config file,
				// never picked up from a stray variable or flag.
				continue
			}
			switch kind {
			case reflect.Struct:
				walk(f.Type, append(path, name), fi)
			case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Uint32, reflect.Uint64:
				add(append(path, name), fi, kind, false)
			}
		}
	}
	walk(reflect.TypeFor[Settings](), nil, nil)
	return out
}

// Set parses v into the field of s that f names.
func (f Field) Set(s *Settings, v string) error {
	fv := reflect.ValueOf(s).Elem().FieldByIndex(f.index)
	switch f.kind {
	case reflect.String:
		fv.SetString(v)
	case reflect.Slice:
		fv.SetBytes([]byte(v))
	case reflect.Bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", f.Env, v)
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", f.Env, v)
		}
		fv.SetInt(n)
	case reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", f.Env, v)
		}
		fv.SetUint(n)
	}
	return nil
}

// Sources are where Load reads settings from. Every field may be left zero.
type Sources struct {
	// File is the YAML configuration file; "" means the file the
	// environment variable EnvConfigFile names, if any.
	File string
	// Getenv reads the environment (os.Getenv; a map in tests).
	Getenv func(string) string
	// Flag returns the value of the flag named Field.Flag if it was given.
	Flag func(name string) (value string, given bool)
}

// Load builds Settings from, in increasing precedence, the configuration
// file, the environment and the flags, and fills in the defaults (the local
// backend, DefaultAuditLog). Errors match ErrConfig and name the file,
// variable or flag at fault.
func Load(src Sources) (Settings, error) {
	var s Settings
	getenv := src.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	path := src.File
	if path == "" {
		path = getenv(EnvConfigFile)
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return s, configError{fmt.Errorf("configuration file: %w", err)}
		}
		if err := yaml.UnmarshalStrict(data, &s); err != nil {
			return s, configError{fmt.Errorf("configuration file %s: %w (valid fields are listed in docs/KEYS.md)", path, err)}
		}
	}
	fields := Fields()
	for _, f := range fields {
		if v := getenv(f.Env); v != "" {
			if err := f.Set(&s, v); err != nil {
				return s, configError{err}
			}
		}
	}
	if src.Flag != nil {
		for _, f := range fields {
			if f.Flag == "" {
				continue
			}
			v, given := src.Flag(f.Flag)
			if !given {
				continue
			}
			if err := f.Set(&s, v); err != nil {
				return s, configError{fmt.Errorf("--%s: %w", f.Flag, err)}
			}
		}
	}
	if s.Backend == "" {
		s.Backend = DefaultBackend
	}
	if s.AuditLog == "" {
		s.AuditLog = DefaultAuditLog()
	}
	return s, nil
}

// DefaultAuditLog is /var/log/tencrypt/audit.jsonl for root and the user's
// state directory otherwise.
func DefaultAuditLog() string {
	if os.Geteuid() == 0 {
		return "/var/log/tencrypt/audit.jsonl"
	}
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "tencrypt", "audit.jsonl")
}
