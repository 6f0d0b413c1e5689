package pkcs11_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/tencrypt/tencrypt/keys/pkcs11/hsmtest"
)

// hsm is the SoftHSM2 of this test binary: SoftHSM2 reads SOFTHSM2_CONF
// once per process, so TestMain sets it up before any test opens the module.
var hsm *hsmtest.HSM

// Tenants whose tokens an operator made with softhsm2-util before the
// process started, with their PINs; every other tenant's token is made by
// CreateTenant with the SO PIN.
var (
	preBlue, preRed, preLone = "pre-blue", "pre-red", "pre-lone"
	prePIN                   = map[string]string{}
)

func TestMain(m *testing.M) {
	var err error
	hsm, err = hsmtest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, tenant := range []string{preBlue, preRed, preLone} {
		if prePIN[tenant], err = hsm.InitToken(tenant); err != nil {
			hsm.Stop()
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	hsm.Stop()
	os.Exit(code)
}
