package snp_test

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gokbs/kbs/plugins/lib/snp"
)

func attesterEvidence(b *testing.B) ([]byte, []byte) {
	ev := mustRead(b, filepath.Join("testdata", "trustee-e2e-evidence.json"))
	digest, _ := hex.DecodeString("7e7320889600c7ac133aea7b896c51f41026002982292a7369559796999c1bf929eef3ff23c46e858f0b1982f9a92b17c51b578d958cde6b0c92978f150cf9b0")
	return ev, digest
}

// cpuPerOp reports the process CPU time per operation: the machine is
// shared, so wall time alone says little.
func cpuPerOp(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerifyEvidence is one verification in-process: parse, chain
// (cached after the first call unless cold), TCB, ECDSA P-384 signature,
// bindings, claims.
func BenchmarkVerifyEvidence(b *testing.B) {
	ev, digest := attesterEvidence(b)
	ctx := context.Background()
	b.Run("real Genoa, warm", func(b *testing.B) {
		v := newVerifier(b, snp.Options{})
		defer cpuPerOp(b)()
		for b.Loop() {
			r, err := v.VerifyEvidence(ctx, ev, snp.Expected{ReportData: digest})
			if err != nil {
				b.Fatal(err)
			}
			_ = snp.Claims(r)
		}
	})
	b.Run("real Genoa, cold chain", func(b *testing.B) {
		defer cpuPerOp(b)()
		for b.Loop() {
			v := newVerifier(b, snp.Options{})
			if _, err := v.VerifyEvidence(ctx, ev, snp.Expected{ReportData: digest}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fake Turin v5, warm", func(b *testing.B) {
		s := signer(b, "Turin")
		fev, err := s.EvidenceFor(runtimeDigest, nil)
		if err != nil {
			b.Fatal(err)
		}
		v := newFakeVerifier(b, s, snp.Options{}, false)
		defer cpuPerOp(b)()
		for b.Loop() {
			if _, err := v.VerifyEvidence(ctx, fev, snp.Expected{ReportData: runtimeDigest}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("real Genoa, warm, parallel", func(b *testing.B) {
		v := newVerifier(b, snp.Options{})
		defer cpuPerOp(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := v.VerifyEvidence(ctx, ev, snp.Expected{ReportData: digest}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkParseEvidence(b *testing.B) {
	ev, _ := attesterEvidence(b)
	defer cpuPerOp(b)()
	for b.Loop() {
		if _, err := snp.ParseEvidence(ev); err != nil {
			b.Fatal(err)
		}
	}
}
