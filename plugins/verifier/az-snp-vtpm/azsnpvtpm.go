// Package azsnpvtpm verifies the evidence of Azure SEV-SNP confidential VMs
// (TEE "az-snp-vtpm"): a vTPM quote, the HCL report that binds the vTPM's
// attestation key to an SNP report, and the VCEK. The vTPM steps are
// plugins/lib/vtpm, the SNP report is plugins/lib/snp; claims are
// trustee's.
package azsnpvtpm

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"maps"
	"strconv"
	"sync/atomic"
	"time"

	libsnp "github.com/gokbs/kbs/plugins/lib/snp"
	"github.com/gokbs/kbs/plugins/lib/vtpm"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TEE is the only TEE name this verifier handles (kbs-host maps trustee's
// older "azsnpvtpm" to it).
const TEE = "az-snp-vtpm"

// DefaultMinReportVersion: Azure's paravisor requests version 2 reports.
const DefaultMinReportVersion = 2

// snpReportData is where REPORT_DATA sits in an SNP report.
const snpReportData = 0x50

// Settings are the plugin's section of the host configuration. Every key
// is optional; unknown keys are an error.
type Settings struct {
	// MinReportVersion is the oldest SNP report version accepted (2..5,
	// default 2).
	MinReportVersion uint32 `json:"min_report_version"`

	testSettings
}

// Verifier is the az-snp-vtpm verifier plugin. Configure swaps in a new
// library verifier; Verify may run concurrently with it.
type Verifier struct {
	lib atomic.Pointer[libsnp.Verifier]
	// now and adjust are set by tests: the clock of certificate checks,
	// and a change to each library verifier (to trust test roots).
	now    func() time.Time
	adjust func(*libsnp.Verifier) error
}

var (
	_ verifier.Verifier = (*Verifier)(nil)
	_ sdk.Configurer    = (*Verifier)(nil)
)

// New returns a verifier with the default settings.
func New() *Verifier {
	v := &Verifier{}
	if err := v.Configure(context.Background(), nil); err != nil {
		panic(err) // the default settings are valid
	}
	return v
}

// Configure applies the settings (strictly decoded).
func (v *Verifier) Configure(_ context.Context, config []byte) error {
	s := Settings{MinReportVersion: DefaultMinReportVersion}
	if err := sdk.DecodeConfig(config, &s); err != nil {
		return err
	}
	// The VCEK always comes with the evidence: never ask AMD's KDS. The
	// HCL runs at VMPL 0, so that is what the report must say.
	lib, err := libsnp.New(libsnp.Options{VMPL: 0, MinReportVersion: s.MinReportVersion, KDSDisabled: true, Now: v.now})
	if err != nil {
		return err
	}
	if err := s.testSettings.apply(lib); err != nil {
		return sdk.InvalidArgument("az-snp-vtpm settings: %v", err)
	}
	if v.adjust != nil {
		if err := v.adjust(lib); err != nil {
			return err
		}
	}
	v.lib.Store(lib)
	return nil
}

// Verify runs trustee's steps in order:
//  1. the TPM quote's signature with the attestation key of the HCL
//     report's variable data;
//  2. the quote's nonce == the runtime-data digest, exactly;
//  3. SHA-256 of the PCR values == the quote's PCR digest;
//  4. SHA-256 of the variable data == the SNP report's REPORT_DATA[:32];
//  5. (version 2) the variable data's user-data starts with the digest;
//  6. the SNP report: VCEK chain to AMD's ARK, TCB, signature, VMPL 0;
//  7. with init-data, PCR8 == SHA-256(32 zero bytes || init-data digest).
//
// It returns trustee's az-snp-vtpm claims.
func (v *Verifier) Verify(ctx context.Context, req *verifier.Request) (verifier.Claims, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.TEE != TEE {
		return nil, sdk.Unsupported("az-snp-vtpm verifier: TEE %q is not %q", req.TEE, TEE)
	}
	ev, err := vtpm.ParseEvidence(req.Evidence, vtpm.SNP)
	if err != nil {
		return nil, err
	}
	att, err := ev.VerifyQuote(req.ReportData)
	if err != nil {
		return nil, err
	}
	report := ev.HCL.HWReport
	if err := ev.HCL.CheckBinding(report[snpReportData : snpReportData+64]); err != nil {
		return nil, err
	}
	if err := ev.CheckUserData(req.ReportData); err != nil {
		return nil, err
	}
	certs, err := vcekCerts(ev)
	if err != nil {
		return nil, err
	}
	r, err := v.lib.Load().VerifyReport(ctx, report, certs)
	if err != nil {
		return nil, err
	}
	if err := att.CheckInitData(req.InitDataDigest); err != nil {
		return nil, err
	}
	claims := Claims(r)
	maps.Copy(claims, att.Claims())
	return claims, nil
}

// vcekCerts reads the evidence's VCEK: PEM, possibly with the ASK and ARK
// (version 0), or one DER certificate (versions 1 and 2), classified by
// its subject (VCEK or VLEK).
func vcekCerts(ev *vtpm.Evidence) ([]libsnp.Cert, error) {
	b := ev.VCEK
	if !ev.VCEKIsPEM() {
		b = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b})
	}
	certs, err := libsnp.CertsFromPEM(b)
	if err != nil {
		return nil, sdk.BadEvidence("az-snp-vtpm evidence: vcek: %w", err)
	}
	return certs, nil
}

// Claims are trustee's SNP claims for Azure (parse_tee_evidence_az): the
// numbers and booleans of the snp verifier's claims as strings,
// measurement, report_data and init_data (HOST_DATA) as standard base64,
// no chip_id. Verify then replaces report_data and init_data with the
// vTPM's (hex nonce and PCR8) and adds tpm.
func Claims(r *libsnp.Report) verifier.Claims {
	c := verifier.Claims{}
	for k, val := range libsnp.Claims(r) {
		switch x := val.(type) {
		case int:
			c[k] = strconv.Itoa(x)
		case bool:
			c[k] = strconv.FormatBool(x)
		}
	}
	c["measurement"] = base64.StdEncoding.EncodeToString(r.Measurement[:])
	c["report_data"] = base64.StdEncoding.EncodeToString(r.ReportData[:])
	c["init_data"] = base64.StdEncoding.EncodeToString(r.HostData[:])
	if len(c) != 15 {
		panic(fmt.Sprintf("az-snp-vtpm: %d SNP claims, want trustee's 15", len(c)))
	}
	return c
}
