package eventlog

import (
	"bytes"
	"testing"

	"github.com/gokbs/kbs/sdk/plugintest"
)

// trimmed drops the unused tail of a CCEL log area, so that seeds stay small.
func trimmed(b []byte) []byte {
	return bytes.TrimRight(b, "\x00\xff")
}

// FuzzParse feeds the parser, replay and claims arbitrary logs, seeded with
// the real ones. Nothing may panic.
func FuzzParse(f *testing.F) {
	for _, n := range []string{"CCEL_data", "CCEL_data_ovmf", "CCEL_data_grub", "CCEL_data_gcp", "CCEL_AAEL_alibabacloud", "CCEL_data_csv"} {
		if b := plugintest.EvidenceSeed(f, "eventlog/"+n); b != nil {
			f.Add(trimmed(b))
		}
	}
	f.Add(minimalLog(sha384Event(1, EvSeparator, []byte{0, 0, 0, 0}), sha384Event(2, 0x80000007, []byte("action"))))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Parse(b)
		if err != nil {
			return
		}
		if _, err := l.RTMRs(); err != nil && l.DigestSizes[AlgSHA384] == 48 {
			t.Fatalf("RTMRs: %v", err)
		}
		l.Claims()
	})
}

func BenchmarkEventLog(b *testing.B) {
	raw := plugintest.EvidenceFile(b, "eventlog/CCEL_data_grub")
	l, err := Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Parse(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("replay", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.RTMRs(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("claims", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l.Claims()
		}
	})
}
