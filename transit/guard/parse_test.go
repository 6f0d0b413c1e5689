package guard

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// Output of `nft -j list counters table inet tencrypt-guard` (nft 1.0.6).
const countersJSON = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},` +
	` {"counter": {"family": "inet", "name": "plaintext-in", "table": "tencrypt-guard", "handle": 1, "packets": 5, "bytes": 500}},` +
	` {"counter": {"family": "inet", "name": "vip-in", "table": "tencrypt-guard", "handle": 2, "packets": 1, "bytes": 28}},` +
	` {"counter": {"family": "inet", "name": "plaintext-out", "table": "tencrypt-guard", "handle": 3, "packets": 7, "bytes": 700}},` +
	` {"counter": {"family": "inet", "name": "vip-out", "table": "tencrypt-guard", "handle": 4, "packets": 18446744073709551615, "bytes": 9}},` +
	` {"counter": {"family": "inet", "name": "plaintext-in", "table": "someone-else", "handle": 4, "packets": 99, "bytes": 99}}]}`

func TestParseCounters(t *testing.T) {
	got, err := parseCounters([]byte(countersJSON))
	if err != nil {
		t.Fatal(err)
	}
	want := Counters{
		PlaintextInPackets: 5, PlaintextInBytes: 500,
		VIPInPackets: 1, VIPInBytes: 28,
		PlaintextOutPackets: 7, PlaintextOutBytes: 700,
		VIPOutPackets: 18446744073709551615, VIPOutBytes: 9,
	}
	if got != want {
		t.Errorf("parseCounters = %+v, want %+v", got, want)
	}
}

func TestParseCountersRejects(t *testing.T) {
	tests := []struct{ name, in string }{
		{"not JSON", "table inet tencrypt-guard {"},
		{"empty document", `{"nftables": []}`},
		{"one counter missing", strings.Replace(countersJSON, `"name": "vip-out"`, `"name": "other"`, 1)},
		{"negative count", strings.Replace(countersJSON, `"packets": 5`, `"packets": -5`, 1)},
		{"count as string", strings.Replace(countersJSON, `"packets": 5`, `"packets": "5"`, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := parseCounters([]byte(tt.in)); err == nil {
				t.Errorf("parseCounters accepted it: %+v", c)
			}
		})
	}
}

func TestParseTables(t *testing.T) {
	in := `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},` +
		` {"table": {"family": "inet", "name": "tencrypt-guard", "handle": 2}},` +
		` {"table": {"family": "ip", "name": "tencrypt-lab", "handle": 3}}]}`
	got, err := parseTables([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []tableID{{"inet", "tencrypt-guard"}, {"ip", "tencrypt-lab"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("parseTables = %v, want %v", got, want)
	}
	if _, err := parseTables([]byte("nope")); err == nil {
		t.Error("parseTables accepted non-JSON")
	}
}

// FuzzParseCounters checks that any input gives counters or an error, never
// a panic, and that success means the input was JSON naming the guard's
// table (a document without it must not read as "zero drops").
func FuzzParseCounters(f *testing.F) {
	f.Add([]byte(countersJSON))
	f.Add([]byte(`{"nftables": []}`))
	f.Add([]byte(`{"nftables": [{"counter": null}, {"table": {}}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := parseCounters(data); err != nil {
			return
		}
		if !json.Valid(data) {
			t.Error("parsed input that is not JSON")
		}
		// (Only without \u escapes, which could spell the name another way.)
		if _, err := parseCounters(bytes.ReplaceAll(data, []byte(Table), []byte("other-table"))); err == nil &&
			!bytes.Contains(data, []byte(`\u`)) {
			t.Error("parsed counters of another table as the guard's")
		}
	})
}

func FuzzParseTables(f *testing.F) {
	f.Add([]byte(`{"nftables": [{"table": {"family": "inet", "name": "tencrypt-guard"}}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseTables(data)
	})
}
