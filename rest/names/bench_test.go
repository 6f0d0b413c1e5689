package names

import "testing"

// BenchmarkEncryptName and BenchmarkDecryptName time one typical name
// (12 bytes: one block, two with the redundancy).
func BenchmarkEncryptName(b *testing.B) {
	tr := newTransform(b, 1)
	dir := NewDirID()
	b.ReportAllocs()
	for range b.N {
		if _, err := tr.Encrypt("payroll.xlsx", dir); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecryptName(b *testing.B) {
	tr := newTransform(b, 1)
	dir := NewDirID()
	enc, _ := tr.Encrypt("payroll.xlsx", dir)
	b.ReportAllocs()
	for range b.N {
		if _, err := tr.Decrypt(enc, dir); err != nil {
			b.Fatal(err)
		}
	}
}
