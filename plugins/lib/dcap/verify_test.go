package dcap_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gokbs/kbs/plugins/lib/dcap"
	"github.com/gokbs/kbs/plugins/lib/dcap/dcaptest"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// platform is shared by the tests: generating keys is the slow part.
var platform = dcaptest.New(dcaptest.Options{Now: testNow})

func testVerifier(p *dcaptest.Platform, tdx bool, o dcaptest.CollateralOptions) *dcap.Verifier {
	return dcap.New(dcap.Options{Roots: []*x509.Certificate{p.Root}, CheckRevocations: true,
		Collateral: &fixedSource{c: p.Collateral(tdx, o)}, Now: at(testNow)})
}

// Offsets in a v4 TD quote and a v3 SGX quote.
const (
	tdBody      = dcap.HeaderSize
	tdSigData   = dcap.HeaderSize + dcap.TD10BodySize + 4
	sgxSigData  = dcap.HeaderSize + dcap.EnclaveBodySize + 4
	tdQEReport  = tdSigData + 128 + 6
	sgxQEReport = sgxSigData + 128
)

func flip(b []byte, i int) []byte {
	out := bytes.Clone(b)
	out[i] ^= 0x01
	return out
}

// TestVerifySynthetic covers success and the failures that need a quote
// signed by keys the test holds.
func TestVerifySynthetic(t *testing.T) {
	rd := []byte("report data")
	tdq := platform.TDXQuote(dcaptest.TDXOptions{ReportData: rd})
	sgxq := platform.SGXQuote(dcaptest.SGXOptions{ReportData: rd})
	other := dcaptest.New(dcaptest.Options{Now: testNow})
	realQuote := plugintest.EvidenceFile(t, "tdx/tdx_quote_4.dat")

	// A quote with an attestation key the QE report does not bind.
	unbound := bytes.Clone(tdq)
	copy(unbound[tdSigData+64:tdSigData+128], other.TDXQuote(dcaptest.TDXOptions{})[tdSigData+64:tdSigData+128])

	tests := map[string]struct {
		quote   []byte
		tdx     bool
		v       *dcap.Verifier
		class   sdk.Class
		message string
	}{
		"TDX v4":                    {quote: tdq, tdx: true},
		"TDX v5 TD 1.5":             {quote: platform.TDXQuote(dcaptest.TDXOptions{Version: 5}), tdx: true},
		"TDX v5 TD 1.0":             {quote: platform.TDXQuote(dcaptest.TDXOptions{Version: 5, BodyType: dcap.BodyTD10}), tdx: true},
		"SGX v3":                    {quote: sgxq},
		"trailing padding":          {quote: append(bytes.Clone(tdq), make([]byte, 70)...), tdx: true},
		"flipped byte in TD body":   {quote: flip(tdq, tdBody+520), tdx: true, class: sdk.ClassBadEvidence, message: "signature does not verify"},
		"flipped byte in SGX body":  {quote: flip(sgxq, dcap.HeaderSize+64), class: sdk.ClassBadEvidence, message: "signature does not verify"},
		"flipped byte in header":    {quote: flip(tdq, 30), tdx: true, class: sdk.ClassBadEvidence, message: "signature does not verify"},
		"flipped quote signature":   {quote: flip(tdq, tdSigData+3), tdx: true, class: sdk.ClassBadEvidence, message: "signature does not verify"},
		"flipped QE report":         {quote: flip(tdq, tdQEReport+100), tdx: true, class: sdk.ClassBadEvidence, message: "QE report is not signed"},
		"flipped SGX QE report":     {quote: flip(sgxq, sgxQEReport+100), class: sdk.ClassBadEvidence, message: "QE report is not signed"},
		"flipped QE authentication": {quote: flip(tdq, tdQEReport+384+64+2), tdx: true, class: sdk.ClassBadEvidence, message: "does not bind the attestation key"},
		"unbound attestation key":   {quote: unbound, tdx: true, class: sdk.ClassBadEvidence, message: "does not bind the attestation key"},
		"another platform's root":   {quote: other.TDXQuote(dcaptest.TDXOptions{}), tdx: true, class: sdk.ClassBadEvidence, message: "not a trusted root"},
		"test quote, Intel root":    {quote: tdq, tdx: true, v: dcap.New(dcap.Options{Now: at(testNow)}), class: sdk.ClassBadEvidence, message: "not a trusted root"},
		"real quote, test root":     {quote: realQuote, tdx: true, class: sdk.ClassBadEvidence, message: "not a trusted root"},
		"PCK certificate not yet valid": {quote: tdq, tdx: true, class: sdk.ClassBadEvidence, message: "PCK chain",
			v: dcap.New(dcap.Options{Roots: []*x509.Certificate{platform.Root}, Now: at(testNow.Add(-48 * time.Hour))})},
		"PCK certificate expired": {quote: tdq, tdx: true, class: sdk.ClassBadEvidence, message: "PCK chain",
			v: dcap.New(dcap.Options{Roots: []*x509.Certificate{platform.Root}, Now: at(testNow.Add(400 * 24 * time.Hour))})},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v := tc.v
			if v == nil {
				v = testVerifier(platform, tc.tdx, dcaptest.CollateralOptions{})
			}
			res, err := v.Verify(context.Background(), tc.quote)
			wantClass(t, err, tc.class)
			if tc.class != "" {
				if !strings.Contains(err.Error(), tc.message) {
					t.Errorf("error = %v, want it to say %q", err, tc.message)
				}
				return
			}
			if res.Quote.IsTDX() != tc.tdx || res.TCB == nil || res.TCB.Status != dcap.StatusUpToDate {
				t.Errorf("result = %v, TCB %v; want TDX %v, UpToDate", res.Quote, res.TCB, tc.tdx)
			}
			if !bytes.HasPrefix(res.Quote.ReportData(), rd) && !strings.HasPrefix(name, "TDX v5") {
				t.Errorf("report data = %x", res.Quote.ReportData())
			}
		})
	}
}

// TestParseQuoteErrors: malformed layouts are bad evidence or unsupported,
// never a panic. Every truncation of a valid quote fails.
func TestParseQuoteErrors(t *testing.T) {
	tdq := platform.TDXQuote(dcaptest.TDXOptions{})
	sgxq := platform.SGXQuote(dcaptest.SGXOptions{})
	set16 := func(b []byte, off int, v uint16) []byte {
		out := bytes.Clone(b)
		binary.LittleEndian.PutUint16(out[off:], v)
		return out
	}
	set32 := func(b []byte, off int, v uint32) []byte {
		out := bytes.Clone(b)
		binary.LittleEndian.PutUint32(out[off:], v)
		return out
	}
	tests := map[string]struct {
		quote []byte
		class sdk.Class
	}{
		"empty":                    {nil, sdk.ClassBadEvidence},
		"oversized":                {append(bytes.Clone(tdq), make([]byte, dcap.MaxQuoteSize)...), sdk.ClassBadEvidence},
		"version 2":                {set16(tdq, 0, 2), sdk.ClassUnsupported},
		"version 6":                {set16(tdq, 0, 6), sdk.ClassUnsupported},
		"P-384 attestation key":    {set16(tdq, 2, 3), sdk.ClassUnsupported},
		"v4 SGX TEE type":          {set32(tdq, 4, 0), sdk.ClassUnsupported},
		"other vendor":             {flip(tdq, 12), sdk.ClassBadEvidence},
		"signature data too long":  {set32(tdq, tdSigData-4, uint32(len(tdq))), sdk.ClassBadEvidence},
		"signature data too short": {set32(tdq, tdSigData-4, 100), sdk.ClassBadEvidence},
		"certification type 5":     {set16(tdq, tdSigData+128, 5), sdk.ClassUnsupported},
		"PCK data type 3":          {set16(sgxq, sgxQEReport+384+64+2+32, 3), sdk.ClassUnsupported},
		"QE auth data too long":    {set16(sgxq, sgxQEReport+384+64, 4000), sdk.ClassBadEvidence},
		"chain size too long":      {set32(sgxq, sgxQEReport+384+64+2+32+2, 1<<30), sdk.ClassBadEvidence},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := dcap.ParseQuote(tc.quote)
			wantClass(t, err, tc.class)
		})
	}
	t.Run("every truncation", func(t *testing.T) {
		for _, q := range [][]byte{tdq, sgxq} {
			for n := range len(q) {
				if _, err := dcap.ParseQuote(q[:n]); err == nil {
					t.Fatalf("ParseQuote accepted the first %d of %d bytes", n, len(q))
				}
			}
		}
	})
}

// TestTCBStatus covers the collateral verdicts: statuses, their
// convergence, revocation, expiry and collateral that does not verify.
func TestTCBStatus(t *testing.T) {
	lowTEE := dcaptest.DefaultTEETCBSVN
	lowTEE[2] = 1
	lowModule := dcaptest.DefaultTEETCBSVN
	lowModule[0] = 2
	noModule := [16]byte{0, 0, 2}
	oldModule := [16]byte{3, 2, 2}
	expired := dcaptest.CollateralOptions{IssueDate: testNow.Add(-2 * time.Hour), NextUpdate: testNow.Add(-time.Hour)}
	tests := map[string]struct {
		sgx        bool
		quote      dcaptest.TDXOptions
		sgxQuote   dcaptest.SGXOptions
		col        dcaptest.CollateralOptions
		accept     bool
		noCRLs     bool
		status     string
		advisory   []string
		date       string
		expired    bool
		class      sdk.Class
		message    string
		collateral func() *dcap.Collateral
	}{
		"up to date":                    {status: "UpToDate", date: "2024-03-13T00:00:00Z"},
		"SGX up to date":                {sgx: true, status: "UpToDate"},
		"SW hardening needed":           {col: dcaptest.CollateralOptions{Status: "SWHardeningNeeded"}, status: "SWHardeningNeeded"},
		"configuration needed":          {col: dcaptest.CollateralOptions{Status: "ConfigurationNeeded"}, status: "ConfigurationNeeded"},
		"platform out of date":          {col: dcaptest.CollateralOptions{Status: "OutOfDate"}, status: "OutOfDate"},
		"TEE TCB below the newest":      {quote: dcaptest.TDXOptions{TEETCBSVN: &lowTEE}, status: "OutOfDate", advisory: []string{"INTEL-SA-00001"}, date: "2018-01-04T00:00:00Z"},
		"TDX module out of date":        {col: dcaptest.CollateralOptions{ModuleStatus: "OutOfDate"}, status: "OutOfDate"},
		"TDX module ISVSVN below":       {quote: dcaptest.TDXOptions{TEETCBSVN: &lowModule}, status: "OutOfDate", advisory: []string{"INTEL-SA-00002"}},
		"module out of date, config":    {col: dcaptest.CollateralOptions{Status: "ConfigurationNeeded", ModuleStatus: "OutOfDate"}, status: "OutOfDateConfigurationNeeded"},
		"TDX module version 0":          {quote: dcaptest.TDXOptions{TEETCBSVN: &noModule}, status: "UpToDate"},
		"unknown TDX module version":    {quote: dcaptest.TDXOptions{TEETCBSVN: &oldModule}, class: sdk.ClassBadEvidence, message: "TDX_02"},
		"QE out of date":                {col: dcaptest.CollateralOptions{QEStatus: "OutOfDate"}, status: "OutOfDate"},
		"QE out of date, SW hardening":  {col: dcaptest.CollateralOptions{Status: "SWHardeningNeeded", QEStatus: "OutOfDate"}, status: "OutOfDate"},
		"QE out of date, configuration": {col: dcaptest.CollateralOptions{Status: "ConfigurationAndSWHardeningNeeded", QEStatus: "OutOfDate"}, status: "OutOfDateConfigurationNeeded"},
		"old QE":                        {quote: dcaptest.TDXOptions{QESVN: 4}, status: "OutOfDate", advisory: []string{"INTEL-SA-00003"}, date: "2019-05-15T00:00:00Z"},
		"SGX old QE":                    {sgx: true, sgxQuote: dcaptest.SGXOptions{QESVN: 4}, status: "OutOfDate", advisory: []string{"INTEL-SA-00003"}},
		"platform revoked":              {col: dcaptest.CollateralOptions{Status: "Revoked"}, class: sdk.ClassBadEvidence, message: "revoked"},
		"QE revoked":                    {col: dcaptest.CollateralOptions{QEStatus: "Revoked"}, class: sdk.ClassBadEvidence, message: "revoked"},
		"unrecognised status":           {col: dcaptest.CollateralOptions{Status: "Fine"}, class: sdk.ClassBadEvidence, message: "unrecognised"},
		"PCK certificate revoked":       {col: dcaptest.CollateralOptions{RevokePCK: true}, class: sdk.ClassBadEvidence, message: "revoked"},
		"PCK CA revoked":                {col: dcaptest.CollateralOptions{RevokePCKCA: true}, class: sdk.ClassBadEvidence, message: "revoked"},
		"SGX PCK revoked":               {sgx: true, col: dcaptest.CollateralOptions{RevokePCK: true}, class: sdk.ClassBadEvidence, message: "revoked"},
		"revocation not checked":        {noCRLs: true, col: dcaptest.CollateralOptions{RevokePCK: true}, status: "UpToDate"},
		"expired collateral":            {col: expired, class: sdk.ClassUnavailable, message: "expired at 2026-03-01T11:00:00Z"},
		"accepted expired collateral":   {col: expired, accept: true, status: "UpToDate", expired: true},
		"collateral from another signer": {class: sdk.ClassUnavailable, message: "signature",
			collateral: func() *dcap.Collateral {
				c := platform.Collateral(true, dcaptest.CollateralOptions{})
				c.TCBInfo = dcaptest.New(dcaptest.Options{Now: testNow}).Collateral(true, dcaptest.CollateralOptions{}).TCBInfo
				return c
			}},
		"SGX collateral for a TD": {class: sdk.ClassUnavailable, message: `id "SGX"`,
			collateral: func() *dcap.Collateral { return platform.Collateral(false, dcaptest.CollateralOptions{}) }},
		"PCK CRL of another CA": {class: sdk.ClassUnavailable, message: "PCK CRL",
			collateral: func() *dcap.Collateral {
				c := platform.Collateral(true, dcaptest.CollateralOptions{})
				c.PCKCRL = c.RootCRL
				return c
			}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			col := platform.Collateral(!tc.sgx, tc.col)
			if tc.collateral != nil {
				col = tc.collateral()
			}
			var req dcap.Request
			v := dcap.New(dcap.Options{Roots: []*x509.Certificate{platform.Root}, CheckRevocations: !tc.noCRLs,
				AcceptExpiredCollateral: tc.accept, Collateral: &fixedSource{c: col, req: &req}, Now: at(testNow)})
			q := platform.TDXQuote(tc.quote)
			if tc.sgx {
				q = platform.SGXQuote(tc.sgxQuote)
			}
			res, err := v.Verify(context.Background(), q)
			wantClass(t, err, tc.class)
			if tc.class != "" {
				if !strings.Contains(err.Error(), tc.message) {
					t.Errorf("error = %v, want it to say %q", err, tc.message)
				}
				return
			}
			if req.TDX == tc.sgx || req.FMSPC != "00906ED50000" || req.CA != "platform" || req.CRLs == tc.noCRLs {
				t.Errorf("collateral request = %+v", req)
			}
			c := res.SupplementalClaims()
			if c["tcb_status"] != tc.status {
				t.Errorf("tcb_status = %v (%v), want %s", c["tcb_status"], res.TCB, tc.status)
			}
			var ids []string
			for _, id := range c["advisory_ids"].([]any) {
				ids = append(ids, id.(string))
			}
			if !slices.Equal(ids, tc.advisory) {
				t.Errorf("advisory_ids = %v, want %v", ids, tc.advisory)
			}
			if tc.date != "" && c["tcb_date"] != tc.date {
				t.Errorf("tcb_date = %v, want %s", c["tcb_date"], tc.date)
			}
			if want := map[bool]string{false: "0", true: "1"}[tc.expired]; c["collateral_expiration_status"] != want {
				t.Errorf("collateral_expiration_status = %v, want %s", c["collateral_expiration_status"], want)
			}
			if _, ok := c["pck_crl_num"]; ok == tc.noCRLs {
				t.Errorf("pck_crl_num present = %v with revocation checks %v", ok, !tc.noCRLs)
			}
		})
	}
}

// TestSupplementalClaims pins the claim names and values for the test
// platform (golden file).
func TestSupplementalClaims(t *testing.T) {
	p := dcaptest.New(dcaptest.Options{Now: testNow})
	res, err := testVerifier(p, true, dcaptest.CollateralOptions{}).Verify(context.Background(), p.TDXQuote(dcaptest.TDXOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	c := res.SupplementalClaims()
	c["root_key_id"] = "<depends on the generated root>"
	golden(t, "supplemental.golden.json", c)
}

// TestVerifierReusesCheckedCollateral: the same *Collateral is checked
// once, a new one again; a broken one is refused each time.
func TestVerifierReusesCheckedCollateral(t *testing.T) {
	src := &fixedSource{c: platform.Collateral(true, dcaptest.CollateralOptions{})}
	v := dcap.New(dcap.Options{Roots: []*x509.Certificate{platform.Root}, Collateral: src, Now: at(testNow)})
	q := platform.TDXQuote(dcaptest.TDXOptions{})
	for range 3 {
		if _, err := v.Verify(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	src.c = &dcap.Collateral{TCBInfo: []byte("{}"), QEIdentity: src.c.QEIdentity, SigningChain: src.c.SigningChain}
	_, err := v.Verify(context.Background(), q)
	wantClass(t, err, sdk.ClassUnavailable)
	src.c, src.err = nil, sdk.Unavailable("PCS down")
	_, err = v.Verify(context.Background(), q)
	wantClass(t, err, sdk.ClassUnavailable)
}

func TestProcessorCA(t *testing.T) {
	p := dcaptest.New(dcaptest.Options{Now: testNow, Processor: true})
	var req dcap.Request
	v := dcap.New(dcap.Options{Roots: []*x509.Certificate{p.Root}, CheckRevocations: true,
		Collateral: &fixedSource{c: p.Collateral(false, dcaptest.CollateralOptions{}), req: &req}, Now: at(testNow)})
	res, err := v.Verify(context.Background(), p.SGXQuote(dcaptest.SGXOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	if req.CA != "processor" || res.Platform.PlatformInstance != nil {
		t.Errorf("request %+v, platform %+v", req, res.Platform)
	}
	c := dcap.SGXClaims(res.Quote, res.Platform)
	if _, ok := c["platform_instance_id"]; ok {
		t.Error("platform_instance_id for a processor CA certificate")
	}
	if _, ok := res.SupplementalClaims()["is_smt_enabled"]; ok {
		t.Error("is_smt_enabled for a processor CA certificate")
	}
}

func TestRegularize(t *testing.T) {
	if got := dcap.Regularize([]byte{1, 2}, 4); !bytes.Equal(got, []byte{1, 2, 0, 0}) {
		t.Errorf("pad: %x", got)
	}
	if got := dcap.Regularize([]byte{1, 2, 3}, 2); !bytes.Equal(got, []byte{1, 2}) {
		t.Errorf("truncate: %x", got)
	}
}

func TestIntelRoot(t *testing.T) {
	r := dcap.IntelRoot()
	sum := sha256Hex(r.Raw)
	if sum != dcap.IntelRootSHA256 || r.Subject.CommonName != dcap.RootCN {
		t.Errorf("embedded root: %s %s", r.Subject.CommonName, sum)
	}
}

// TestChainCacheRechecksTime: a PCK chain verified once is cached, but
// its validity is checked at every verification.
func TestChainCacheRechecksTime(t *testing.T) {
	now := testNow
	v := dcap.New(dcap.Options{Roots: []*x509.Certificate{platform.Root}, Now: func() time.Time { return now }})
	q := platform.TDXQuote(dcaptest.TDXOptions{})
	for _, tc := range []struct {
		now time.Time
		ok  bool
	}{{testNow, true}, {testNow.Add(400 * 24 * time.Hour), false}, {testNow.Add(-48 * time.Hour), false}, {testNow, true}} {
		now = tc.now
		_, err := v.Verify(context.Background(), q)
		if (err == nil) != tc.ok {
			t.Errorf("at %s: error %v, want success %v", now, err, tc.ok)
		}
		if err != nil {
			wantClass(t, err, sdk.ClassBadEvidence)
		}
	}
}
