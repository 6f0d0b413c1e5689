package cryptocore

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestWideKeyNeverPrinted: a WideKey formats as the placeholder every way,
// and Zero clears it.
func TestWideKeyNeverPrinted(t *testing.T) {
	var secret Key
	k := DeriveWideKey(&secret, nil, LabelFscryptMasterKey)
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("key", "k", k, "kp", &k)
	js, _ := json.Marshal(struct{ K WideKey }{k})
	outs := []string{logs.String(), string(js), k.String(), k.GoString()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		outs = append(outs, fmt.Sprintf(verb, k), fmt.Sprintf(verb, &k), fmt.Sprintf(verb, []WideKey{k}))
	}
	hx := hex.EncodeToString(k[:4])
	for _, o := range outs {
		if !strings.Contains(o, "REDACTED") || strings.Contains(strings.ToLower(o), hx) {
			t.Fatalf("key printed or no placeholder: %q", o)
		}
	}
	k.Zero()
	if k != (WideKey{}) {
		t.Fatal("Zero left bytes")
	}
}
