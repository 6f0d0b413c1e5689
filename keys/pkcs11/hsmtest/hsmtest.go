// Package hsmtest sets up a throwaway SoftHSM2 for tests: a temporary
// directory with its own softhsm2.conf and token directory, named in
// SOFTHSM2_CONF for this process.
//
// SoftHSM2 reads SOFTHSM2_CONF and scans its token directory once, at
// C_Initialize, so a test binary has one HSM, set up in TestMain before any
// provider opens the module:
//
//	func TestMain(m *testing.M) {
//		hsm, err := hsmtest.Start()
//		if err != nil { fmt.Fprintln(os.Stderr, err); os.Exit(1) }
//		code := m.Run()
//		hsm.Stop()
//		os.Exit(code)
//	}
//
// Tokens made with InitToken (softhsm2-util, another process) are seen by a
// process only if it initialises the module afterwards; tokens for tenants
// made during the tests come from CreateTenant with the SO PIN instead.
package hsmtest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/tencrypt/tencrypt/keys/pkcs11"
)

// Module is the SoftHSM2 library the tests load.
const Module = pkcs11.DefaultModule

// HSM is one SoftHSM2 set up by Start.
type HSM struct {
	// Dir holds everything: softhsm2.conf, tokens/, pins/ and so.pin.
	Dir string
	// PINDir is the admin's pin_dir.
	PINDir string
	// SOPINFile holds the SO PIN InitToken and CreateTenant give tokens.
	SOPINFile string
	soPIN     string
	prevConf  string
	hadConf   bool
}

// Start creates the HSM's directory, writes its softhsm2.conf and sets
// SOFTHSM2_CONF to it. It fails, saying what to install, if SoftHSM2 is
// missing: tests need the real thing.
func Start() (_ *HSM, err error) {
	if _, err := os.Stat(Module); err != nil {
		return nil, fmt.Errorf("hsmtest: SoftHSM2 module %s missing: run scripts/setup (it installs the softhsm2 package)", Module)
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return nil, errors.New("hsmtest: softhsm2-util not on PATH: run scripts/setup (it installs the softhsm2 package)")
	}
	dir, err := os.MkdirTemp("", "tencrypt-softhsm-")
	if err != nil {
		return nil, fmt.Errorf("hsmtest: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	h := &HSM{Dir: dir, PINDir: filepath.Join(dir, "pins"), SOPINFile: filepath.Join(dir, "so.pin"), soPIN: randomPIN()}
	for _, d := range []string{filepath.Join(dir, "tokens"), h.PINDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, fmt.Errorf("hsmtest: %w", err)
		}
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", filepath.Join(dir, "tokens"))
	if err := os.WriteFile(h.confPath(), []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("hsmtest: %w", err)
	}
	if err := os.WriteFile(h.SOPINFile, []byte(h.soPIN+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("hsmtest: %w", err)
	}
	h.prevConf, h.hadConf = os.LookupEnv("SOFTHSM2_CONF")
	if err := os.Setenv("SOFTHSM2_CONF", h.confPath()); err != nil {
		return nil, fmt.Errorf("hsmtest: %w", err)
	}
	return h, nil
}

func (h *HSM) confPath() string { return filepath.Join(h.Dir, "softhsm2.conf") }

// Stop restores SOFTHSM2_CONF and removes the HSM's directory.
func (h *HSM) Stop() {
	if h.hadConf {
		_ = os.Setenv("SOFTHSM2_CONF", h.prevConf)
	} else {
		_ = os.Unsetenv("SOFTHSM2_CONF")
	}
	_ = os.RemoveAll(h.Dir)
}

// InitToken initialises a token for tenant with softhsm2-util, the way an
// operator would, writes its user PIN to PINDir/tenant and returns the PIN.
// Call it before the process first opens the module (see the package doc).
func (h *HSM) InitToken(tenant string) (string, error) {
	pin := randomPIN()
	label := pkcs11.TokenLabel(pkcs11.DefaultTokenPrefix, tenant)
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", h.soPIN, "--pin", pin)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+h.confPath())
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("hsmtest: softhsm2-util --init-token --label %s: %w: %s", label, err, out)
	}
	if err := os.WriteFile(filepath.Join(h.PINDir, tenant), []byte(pin+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("hsmtest: %w", err)
	}
	return pin, nil
}

// Admin is the admin view: every PIN in PINDir, and the SO PIN so that
// CreateTenant can initialise tokens for new tenants.
func (h *HSM) Admin() pkcs11.Config {
	return pkcs11.Config{Module: Module, PINDir: h.PINDir, SOPINFile: h.SOPINFile}
}

// Tenant is tenant's own view: only its token, with the PIN from PINDir.
func (h *HSM) Tenant(tenant string) pkcs11.Config {
	return pkcs11.Config{Module: Module, Tenant: tenant, PINFile: filepath.Join(h.PINDir, tenant)}
}

func randomPIN() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
