package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/tencrypt/tencrypt/keys/backend"
)

// keysConfig is the configuration of the keys commands: the backend
// configuration, flattened at the top of the file, and the audit log.
type keysConfig struct {
	backend.Config
	// AuditLog is the JSON-lines file every unwrap and rewrap is recorded in.
	AuditLog string `json:"audit_log,omitempty"`
}

// setting is one configuration field reachable from a flag and a variable.
// Settings are derived from the json tags of backend.Config, so a backend
// that adds its section there gets --<section>-<field> flags and
// TENCRYPT_<SECTION>_<FIELD> variables without touching this file.
type setting struct {
	flag  string // "" for secrets, which only come from the environment
	env   string
	file  string // dotted name in the config file
	index []int  // field path in keysConfig
	kind  reflect.Kind
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

// keysSettings lists every setting of keysConfig.
func keysSettings() []setting {
	var out []setting
	add := func(path []string, idx []int, kind reflect.Kind, secret bool) {
		s := setting{
			env:   "TENCRYPT_" + strings.ToUpper(strings.Join(path, "_")),
			file:  strings.Join(path, "."),
			index: idx,
			kind:  kind,
		}
		if !secret {
			s.flag = strings.ReplaceAll(strings.Join(path, "-"), "_", "-")
		} else {
			s.file = ""
		}
		out = append(out, s)
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
	walk(reflect.TypeFor[keysConfig](), nil, nil)
	return out
}

// set parses v into the field of cfg that s names.
func (s setting) set(cfg *keysConfig, v string) error {
	f := reflect.ValueOf(cfg).Elem().FieldByIndex(s.index)
	switch s.kind {
	case reflect.String:
		f.SetString(v)
	case reflect.Slice:
		f.SetBytes([]byte(v))
	case reflect.Bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", s.env, v)
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", s.env, v)
		}
		f.SetInt(n)
	case reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", s.env, v)
		}
		f.SetUint(n)
	}
	return nil
}

// bindKeysFlags adds the persistent flags of every setting to the keys
// command, plus --config.
func bindKeysFlags(cmd *cobra.Command) {
	fs := cmd.PersistentFlags()
	fs.String("config", "", "YAML configuration file (fields as in docs/KEYS.md; env TENCRYPT_CONFIG)")
	for _, s := range keysSettings() {
		if s.flag == "" {
			continue
		}
		help := fmt.Sprintf("config %s, env %s", s.file, s.env)
		switch s.flag {
		case "backend":
			help = "key backend, one of: " + strings.Join(backend.Names(), ", ") + " (default local; " + help + ")"
		case "audit-log":
			help = "JSON-lines audit log of every unwrap and rewrap (default " + defaultAuditLog() + "; " + help + ")"
		}
		if s.kind == reflect.Bool {
			fs.Bool(s.flag, false, help)
		} else {
			fs.String(s.flag, "", help)
		}
	}
}

// loadKeysConfig builds the configuration from, in increasing precedence,
// the config file, the environment and the flags.
func loadKeysConfig(cmd *cobra.Command, getenv func(string) string) (keysConfig, error) {
	var cfg keysConfig
	path, _ := cmd.Flags().GetString("config")
	if path == "" {
		path = getenv("TENCRYPT_CONFIG")
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, usageError{fmt.Errorf("configuration file: %w", err)}
		}
		if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
			return cfg, usageError{fmt.Errorf("configuration file %s: %w (valid fields are listed in docs/KEYS.md)", path, err)}
		}
	}
	settings := keysSettings()
	for _, s := range settings {
		if v := getenv(s.env); v != "" {
			if err := s.set(&cfg, v); err != nil {
				return cfg, usageError{err}
			}
		}
	}
	for _, s := range settings {
		if s.flag == "" || !cmd.Flags().Changed(s.flag) {
			continue
		}
		v := cmd.Flags().Lookup(s.flag).Value.String()
		if err := s.set(&cfg, v); err != nil {
			return cfg, usageError{fmt.Errorf("--%s: %w", s.flag, err)}
		}
	}
	if cfg.Backend == "" {
		cfg.Backend = "local"
	}
	if cfg.AuditLog == "" {
		cfg.AuditLog = defaultAuditLog()
	}
	return cfg, nil
}

// defaultAuditLog is /var/log/tencrypt/audit.jsonl for root and the user's
// state directory otherwise.
func defaultAuditLog() string {
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
