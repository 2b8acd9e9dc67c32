// Package csv verifies Hygon CSV (China Secure Virtualization) attestation
// reports: the SM2 signature chain from Hygon's pinned root key (HRK)
// through the HSK, the chip's CEK and the platform's PEK to the report, and
// the binding of the report to the runtime data.
package csv

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TEE is the only TEE name this verifier handles.
const TEE = "csv"

// Defaults of the settings, as trustee uses them.
const (
	DefaultCertDir      = "/opt/hygon/csv"
	DefaultKDSURL       = "https://cert.hygon.cn/hsk_cek"
	DefaultFetchTimeout = 10 * time.Second
)

// maxEvidence bounds the evidence: a report is 4 KiB, but serde writes
// every byte as a JSON number, and the event log comes along.
const maxEvidence = 4 << 20

// Config is the plugin's section of the host configuration.
type Config struct {
	// CertDir holds HSK/CEK pairs as <cert_dir>/hsk_cek/<chip>/hsk_cek.cert
	// (trustee's layout). Default /opt/hygon/csv.
	CertDir string `json:"cert_dir"`
	// KDSURL is Hygon's key distribution service; the chip's serial number
	// is sent as ?snumber=. Default https://cert.hygon.cn/hsk_cek.
	KDSURL string `json:"kds_url"`
	// Offline never contacts the KDS: HSK/CEK come from the evidence or
	// CertDir only.
	Offline bool `json:"offline"`
	// FetchTimeout bounds one KDS request. Default 10s.
	FetchTimeout string `json:"fetch_timeout"`
	// HRKPath pins another root certificate instead of Hygon's HRK (for
	// test chains). It must be self-signed.
	HRKPath string `json:"hrk_path"`
}

// Verifier verifies CSV evidence. It is safe for concurrent use; its only
// state is the HSK/CEK cache.
type Verifier struct {
	hrk    *caCert
	hskcek *hskCEKSource
}

var (
	_ verifier.Verifier = (*Verifier)(nil)
	_ sdk.Configurer    = (*Verifier)(nil)
)

// New returns a verifier with the default settings.
func New() *Verifier {
	v := &Verifier{}
	if err := v.apply(Config{}); err != nil {
		panic(err) // the defaults always apply
	}
	return v
}

// Configure applies the plugin's settings.
func (v *Verifier) Configure(_ context.Context, raw []byte) error {
	var cfg Config
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return err
	}
	return v.apply(cfg)
}

func (v *Verifier) apply(cfg Config) error {
	if cfg.CertDir == "" {
		cfg.CertDir = DefaultCertDir
	}
	if cfg.KDSURL == "" {
		cfg.KDSURL = DefaultKDSURL
	}
	timeout := DefaultFetchTimeout
	if cfg.FetchTimeout != "" {
		d, err := time.ParseDuration(cfg.FetchTimeout)
		if err != nil || d <= 0 {
			return sdk.InvalidArgument("csv settings: fetch_timeout %q is not a positive duration", cfg.FetchTimeout)
		}
		timeout = d
	}
	hrk := builtinHRK()
	if cfg.HRKPath != "" {
		b, err := os.ReadFile(cfg.HRKPath)
		if err != nil {
			return sdk.InvalidArgument("csv settings: hrk_path: %v", err)
		}
		if hrk, err = parseCACert(b); err != nil {
			return sdk.InvalidArgument("csv settings: hrk_path: %v", err)
		}
		if err := hrk.verifiedBy(hrk); err != nil {
			return sdk.InvalidArgument("csv settings: hrk_path: the root is not self-signed: %v", err)
		}
	}
	src, err := newHSKCEKSource(cfg.CertDir, cfg.KDSURL, cfg.Offline, timeout)
	if err != nil {
		return sdk.InvalidArgument("csv settings: %v", err)
	}
	v.hrk, v.hskcek = hrk, src
	return nil
}

// evidence is trustee's CsvEvidence as the guest's attester sends it.
type evidence struct {
	AttestationReport *struct {
		Magic json.RawMessage `json:"magic"`
		Flags uint32          `json:"flags"`
		Data  json.RawMessage `json:"data"`
	} `json:"attestation_report"`
	CertChain *struct {
		HSKCEK *struct {
			HSK json.RawMessage `json:"hsk"`
			CEK json.RawMessage `json:"cek"`
		} `json:"hsk_cek"`
		PEK json.RawMessage `json:"pek"`
	} `json:"cert_chain"`
	SerialNumber json.RawMessage `json:"serial_number"`
	CCEventLog   *string         `json:"cc_eventlog"`
}

// parsed is evidence with its binary parts decoded, before any signature
// is checked.
type parsed struct {
	report *report
	pek    *csvCert
	hsk    *caCert // nil when the evidence carries no HSK/CEK
	cek    *csvCert
	chip   string
}

// parseEvidence decodes the evidence JSON. Every error is bad evidence.
func parseEvidence(raw []byte) (*parsed, error) {
	if len(raw) > maxEvidence {
		return nil, fmt.Errorf("evidence is %d bytes, more than %d", len(raw), maxEvidence)
	}
	var ev evidence
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, err
	}
	if ev.AttestationReport == nil {
		return nil, fmt.Errorf("attestation_report is missing")
	}
	if ev.CertChain == nil || len(ev.CertChain.PEK) == 0 {
		return nil, fmt.Errorf("cert_chain.pek is missing")
	}
	magic, err := byteArray(ev.AttestationReport.Magic, 16, "attestation_report.magic")
	if err != nil {
		return nil, err
	}
	data, err := byteArray(ev.AttestationReport.Data, reportSize, "attestation_report.data")
	if err != nil {
		return nil, err
	}
	p := &parsed{}
	if p.report, err = parseReport(magic, ev.AttestationReport.Flags, data); err != nil {
		return nil, err
	}
	pekRaw, err := csvCertFromJSON(ev.CertChain.PEK, "cert_chain.pek")
	if err != nil {
		return nil, err
	}
	if p.pek, err = parseCSVCert(pekRaw); err != nil {
		return nil, fmt.Errorf("cert_chain.pek: %w", err)
	}
	if hc := ev.CertChain.HSKCEK; hc != nil {
		hskRaw, err := caCertFromJSON(hc.HSK, "cert_chain.hsk_cek.hsk")
		if err != nil {
			return nil, err
		}
		cekRaw, err := csvCertFromJSON(hc.CEK, "cert_chain.hsk_cek.cek")
		if err != nil {
			return nil, err
		}
		if p.hsk, p.cek, err = parseHSKCEK(append(hskRaw, cekRaw...)); err != nil {
			return nil, err
		}
	}
	if len(ev.SerialNumber) == 0 || ev.SerialNumber[0] != '[' {
		return nil, fmt.Errorf("serial_number is not an array of bytes")
	}
	var sn []byte
	if err := json.Unmarshal(ev.SerialNumber, &sn); err != nil {
		return nil, fmt.Errorf("serial_number: %v", err)
	}
	if p.chip, err = chipID(sn); err != nil {
		return nil, err
	}
	return p, nil
}

// chipID turns the NUL-padded serial number into the chip ID that names
// the HSK/CEK on disk and at the KDS; it must be a safe path segment.
func chipID(sn []byte) (string, error) {
	s := string(bytes.TrimRight(sn, "\x00"))
	if s == "" || len(s) > 64 {
		return "", fmt.Errorf("serial_number: chip id of %d characters", len(s))
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", fmt.Errorf("serial_number: chip id %q has a character outside [A-Za-z0-9_-]", s)
		}
	}
	return s, nil
}

// parseHSKCEK splits Hygon's hsk_cek.cert (the HSK followed by the CEK).
func parseHSKCEK(b []byte) (*caCert, *csvCert, error) {
	if len(b) != hskCEKSize {
		return nil, nil, fmt.Errorf("HSK/CEK is %d bytes, want %d", len(b), hskCEKSize)
	}
	hsk, err := parseCACert(b[:caCertSize])
	if err != nil {
		return nil, nil, fmt.Errorf("HSK: %w", err)
	}
	cek, err := parseCSVCert(b[caCertSize:])
	if err != nil {
		return nil, nil, fmt.Errorf("CEK: %w", err)
	}
	return hsk, cek, nil
}

// verifyHSKCEK checks HRK → HSK → CEK.
func verifyHSKCEK(hrk, hsk *caCert, cek *csvCert) error {
	if hsk.pub.usage != usageHSK {
		return fmt.Errorf("HSK certificate has usage %#x", hsk.pub.usage)
	}
	if err := hsk.verifiedBy(hrk); err != nil {
		return fmt.Errorf("HSK is not signed by the HRK: %w", err)
	}
	if cek.pub.usage != usageCEK {
		return fmt.Errorf("CEK certificate has usage %#x", cek.pub.usage)
	}
	if err := cek.verifiedBy(hsk.pub, algoSM2SA); err != nil {
		return fmt.Errorf("CEK is not signed by the HSK: %w", err)
	}
	return nil
}

// verifyPEK checks CEK → PEK.
func verifyPEK(cek, pek *csvCert) error {
	if pek.pub.usage != usagePEK {
		return fmt.Errorf("PEK certificate has usage %#x", pek.pub.usage)
	}
	if err := pek.verifiedBy(cek.pub, cek.algo); err != nil {
		return fmt.Errorf("PEK is not signed by the CEK: %w", err)
	}
	return nil
}

// verifyReport checks the PEK's signature over the report.
func verifyReport(pek *csvCert, r *report) error {
	if !pek.pub.verify(r.signed(), r.sig) {
		return fmt.Errorf("the report's signature does not verify with the PEK")
	}
	return nil
}

// Verify checks the evidence and returns trustee's CSV claims.
func (v *Verifier) Verify(ctx context.Context, req *verifier.Request) (verifier.Claims, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.TEE != TEE {
		return nil, sdk.Unsupported("csv verifier: TEE %q is not %q", req.TEE, TEE)
	}
	if len(req.ReportData) == 0 {
		return nil, sdk.InvalidArgument("csv verifier: no expected report data")
	}
	p, err := parseEvidence(req.Evidence)
	if err != nil {
		return nil, sdk.BadEvidence("csv evidence: %v", err)
	}
	// The report is checked before fetching anything, so that forged
	// evidence costs no request to Hygon.
	if err := verifyReport(p.pek, p.report); err != nil {
		return nil, sdk.BadEvidence("csv evidence: %v", err)
	}
	cek := p.cek
	if p.hsk != nil {
		if err := verifyHSKCEK(v.hrk, p.hsk, p.cek); err != nil {
			return nil, sdk.BadEvidence("csv evidence: %v", err)
		}
	} else if cek, err = v.hskcek.get(ctx, v.hrk, p.chip); err != nil {
		return nil, err
	}
	if err := verifyPEK(cek, p.pek); err != nil {
		return nil, sdk.BadEvidence("csv evidence: chip %s: %v", p.chip, err)
	}
	want := fit(req.ReportData, 64)
	if subtle.ConstantTimeCompare(want, p.report.reportData) != 1 {
		return nil, sdk.BadEvidence("csv evidence: report_data does not match the expected runtime-data digest")
	}
	if len(req.InitDataDigest) > 0 {
		// CSV has no field that init-data could be bound to; trustee
		// skips the check too.
		sdk.Logger().Debug("csv has no init-data field; init-data is not bound to the evidence")
	}
	return verifier.Claims(p.report.claims(p.chip)), nil
}

// fit right-pads b with zeros, or truncates it, to n bytes.
func fit(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}

// sanitize keeps a remote error message short and printable.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
