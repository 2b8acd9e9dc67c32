package snp

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/gokbs/kbs/sdk/plugintest"
)

// TestPinnedRootsMatchTrustee: the roots pinned from go-sev-guest are the
// very certificates trustee pins (<gen>_ask_ark_asvk.pem: ASK, ARK, ASVK).
func TestPinnedRootsMatchTrustee(t *testing.T) {
	for gen, file := range map[Generation]string{Milan: "milan", Genoa: "genoa", Turin: "turin"} {
		t.Run(gen.String(), func(t *testing.T) {
			rest := plugintest.EvidenceFile(t, "snp/"+file+"_ask_ark_asvk.pem")
			var ders [][]byte
			for {
				var b *pem.Block
				if b, rest = pem.Decode(rest); b == nil {
					break
				}
				ders = append(ders, b.Bytes)
			}
			rs := amdRoots[gen]
			if len(ders) != 3 || !bytes.Equal(ders[0], rs.ask.Raw) || !bytes.Equal(ders[1], rs.ark.Raw) || !bytes.Equal(ders[2], rs.asvk.Raw) {
				t.Fatalf("pinned %v roots differ from trustee's", gen)
			}
			if rs.ark.Subject.CommonName != "ARK-"+gen.String() || rs.ask.Subject.CommonName != "SEV-"+gen.String() || rs.asvk.Subject.CommonName != "SEV-VLEK-"+gen.String() {
				t.Errorf("subjects %q %q %q", rs.ark.Subject.CommonName, rs.ask.Subject.CommonName, rs.asvk.Subject.CommonName)
			}
			if err := rs.ark.CheckSignatureFrom(rs.ark); err != nil {
				t.Errorf("ARK is not self-signed: %v", err)
			}
		})
	}
}

func mustCert(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestVEKExtensions reads the real certificates' AMD extensions, including
// both hwID encodings KDS has used.
func TestVEKExtensions(t *testing.T) {
	tests := []struct {
		file   string
		signer Signer
		want   TCB
		hwid   int
		csp    string
	}{
		{"snp/test-vcek.der", SignerVCEK, TCB{Bootloader: 3, SNP: 8, Microcode: 115}, 64, ""},
		{"snp/test-vcek-invalid-legacy.der", SignerVCEK, TCB{}, 64, ""},
		{"snp/test-vcek-invalid-new.der", SignerVCEK, TCB{}, 64, ""},
		{"snp/test-vlek.der", SignerVLEK, TCB{Bootloader: 4, SNP: 24, Microcode: 217}, 0, "CN=cc-us-east-2.amazonaws.com"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			c := mustCert(t, plugintest.EvidenceFile(t, tc.file))
			ext, err := checkVEKShape(c, tc.signer)
			if err != nil {
				t.Fatal(err)
			}
			if len(ext.hwid) != tc.hwid || ext.cspID != tc.csp {
				t.Errorf("hwid %d bytes, csp %q; want %d, %q", len(ext.hwid), ext.cspID, tc.hwid, tc.csp)
			}
			if tc.want != (TCB{}) && ext.tcb != tc.want {
				t.Errorf("tcb = %+v, want %+v", ext.tcb, tc.want)
			}
			if g, err := productGeneration(ext); err != nil || g != Milan {
				t.Errorf("generation = %v, %v; want Milan", g, err)
			}
			if _, err := checkVEKShape(c, 1-tc.signer); err == nil {
				t.Errorf("accepted as a %v", 1-tc.signer)
			}
		})
	}
}

// TestRealChains: the real VCEK and VLEK chain to the pinned Milan roots
// (the VLEK only while it was valid: it expired 2025-12-10); a corrupted
// VCEK does not.
func TestRealChains(t *testing.T) {
	before := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	after := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	vcek := plugintest.EvidenceFile(t, "snp/test-vcek.der")
	vlek := plugintest.EvidenceFile(t, "snp/test-vlek.der")
	corrupt := bytes.Clone(vcek)
	corrupt[42] ^= 0xff
	tests := []struct {
		name   string
		der    []byte
		signer Signer
		now    time.Time
		ok     bool
	}{
		{"VCEK", vcek, SignerVCEK, before, true},
		{"VCEK later", vcek, SignerVCEK, after, true},
		{"VLEK while valid", vlek, SignerVLEK, before, true},
		{"VLEK expired", vlek, SignerVLEK, after, false},
		{"VCEK byte 42 corrupted", corrupt, SignerVCEK, before, false},
		{"VCEK through the VLEK intermediate", vcek, SignerVLEK, before, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := x509.ParseCertificate(tc.der)
			if err == nil {
				_, _, err = verifyChain(c, amdRoots[Milan], tc.signer, nil, tc.now)
			}
			if (err == nil) != tc.ok {
				t.Errorf("verify chain error = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestGenerationFromCPUID(t *testing.T) {
	tests := []struct {
		fam, model uint8
		want       Generation
	}{
		{0x19, 0x00, Milan}, {0x19, 0x01, Milan}, {0x19, 0x0F, Milan},
		{0x19, 0x10, Genoa}, {0x19, 0x11, Genoa}, {0x19, 0xA0, Genoa}, {0x19, 0xAF, Genoa},
		{0x1A, 0x00, Turin}, {0x1A, 0x02, Turin}, {0x1A, 0x11, Turin},
		{0x19, 0x20, GenerationUnknown}, {0x1A, 0x12, GenerationUnknown}, {0x17, 0x31, GenerationUnknown},
	}
	for _, tc := range tests {
		if g, _ := generationFromCPUID(tc.fam, tc.model); g != tc.want {
			t.Errorf("generationFromCPUID(0x%x, 0x%x) = %v, want %v", tc.fam, tc.model, g, tc.want)
		}
	}
}
