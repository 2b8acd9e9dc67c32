package vtpm

import (
	"github.com/gokbs/kbs/sdk/plugintest"
	"syscall"
	"testing"
	"time"
)

// BenchmarkVTPM is the vTPM part of one verification of the real v1 SNP
// evidence: parsing, AK, quote signature, nonce, PCRs, binding.
func BenchmarkVTPM(b *testing.B) {
	doc := realV1(b)
	start := cpuTime()
	for b.Loop() {
		ev, err := ParseEvidence(doc, SNP)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ev.VerifyQuote([]byte("challenge")); err != nil {
			b.Fatal(err)
		}
		if err := ev.HCL.CheckBinding(ev.HCL.HWReport[0x50:0x90]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

// BenchmarkParseV0 is the legacy form with integer arrays (36 KiB).
func BenchmarkParseV0(b *testing.B) {
	doc := realV0(b)
	for b.Loop() {
		if _, err := ParseEvidence(doc, SNP); err != nil {
			b.Fatal(err)
		}
	}
}

func realV0(b *testing.B) []byte {
	return plugintest.EvidenceFile(b, "az-snp-vtpm/evidence-v0.json")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
