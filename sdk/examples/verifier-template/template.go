// Package template is a verifier plugin to start from: it shows the parts
// every verifier has (the TEE it declares, settings, the evidence format,
// the binding of the evidence to the runtime data and the init-data, error
// classes, claims) around a toy evidence format with no signature.
//
// Replace the evidence format and the checks with your TEE's. Never deploy
// this plugin as it is: its evidence proves nothing.
package template

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"sync/atomic"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TEE is the kbs-types name of the TEE this plugin verifies. The host only
// sends evidence of TEE names it knows ("snp", "tdx", "csv", ...); put
// yours here.
const TEE = "sampledevice"

// Config is the plugin's section of the host configuration:
//
//	[[plugins.verifier]]
//	name = "template"
//	[plugins.verifier.config]
//	min_svn = 2
type Config struct {
	// MinSVN is the lowest security version accepted. Default 0.
	MinSVN uint32 `json:"min_svn"`
}

// Verifier is stateless apart from its settings.
type Verifier struct {
	cfg atomic.Pointer[Config]
}

var (
	_ verifier.Verifier = (*Verifier)(nil)
	_ sdk.Configurer    = (*Verifier)(nil)
)

// New returns a verifier with the default settings.
func New() *Verifier {
	v := &Verifier{}
	v.cfg.Store(&Config{})
	return v
}

// Configure is called once after the plugin starts (and after every
// restart), before any Verify. sdk.DecodeConfig refuses unknown keys, so
// that an operator's typo fails the start instead of being ignored.
func (v *Verifier) Configure(_ context.Context, raw []byte) error {
	cfg := Config{}
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return err
	}
	v.cfg.Store(&cfg)
	return nil
}

// evidence is what the guest's attester sends as primary_evidence.
// report_data and init_data are the TEE's 64-byte fields, as a real
// report carries them: the runtime-data and init-data digests, padded.
type evidence struct {
	SVN        *uint32 `json:"svn"`
	ReportData string  `json:"report_data"` // standard base64, 64 bytes
	InitData   string  `json:"init_data"`   // standard base64, 64 bytes; optional
}

// Verify checks the evidence and returns its claims. The error class tells
// the host what happened: BadEvidence for the guest's fault (never
// retried), Unsupported for what this plugin cannot handle, Unavailable
// when a dependency is down, InvalidArgument for a bad request.
func (v *Verifier) Verify(ctx context.Context, req *verifier.Request) (verifier.Claims, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.TEE != TEE {
		return nil, sdk.Unsupported("TEE %q is not %q", req.TEE, TEE)
	}
	var ev evidence
	if err := json.Unmarshal(req.Evidence, &ev); err != nil {
		return nil, sdk.BadEvidence("%s evidence: %v", TEE, err)
	}
	if ev.SVN == nil {
		return nil, sdk.BadEvidence("%s evidence: svn is missing", TEE)
	}
	// A real verifier checks the report's signature and its chain to the
	// vendor's root here, before trusting any field.
	reportData, err := field(ev.ReportData, "report_data")
	if err != nil {
		return nil, err
	}
	// The binding: the report carries the host's runtime-data digest
	// (nonce and TEE key), padded with zeros to the field's size.
	// Compare in constant time.
	if subtle.ConstantTimeCompare(pad(req.ReportData, 64), reportData) != 1 {
		return nil, sdk.BadEvidence("%s evidence: report_data does not match the expected runtime-data digest", TEE)
	}
	claims := verifier.Claims{
		"svn":         *ev.SVN,
		"report_data": hex.EncodeToString(reportData),
	}
	// When the guest sent init-data, its digest must be in the TEE's
	// init-data field. Report the field either way.
	if ev.InitData != "" || len(req.InitDataDigest) > 0 {
		initData, err := field(ev.InitData, "init_data")
		if err != nil {
			return nil, err
		}
		if len(req.InitDataDigest) > 0 && subtle.ConstantTimeCompare(pad(req.InitDataDigest, 64), initData) != 1 {
			return nil, sdk.BadEvidence("%s evidence: init_data does not match the init-data digest", TEE)
		}
		claims["init_data"] = hex.EncodeToString(initData)
	}
	// Policy-like checks that belong to the plugin's settings. Anything
	// a deployment may want to decide differently belongs in the
	// attestation policy instead, which sees the claims.
	if *ev.SVN < v.cfg.Load().MinSVN {
		return nil, sdk.BadEvidence("%s evidence: svn %d is below the minimum %d", TEE, *ev.SVN, v.cfg.Load().MinSVN)
	}
	// Never log evidence or claims at Info: they identify the guest.
	sdk.Logger().Debug("verified", "tee", TEE, "svn", *ev.SVN)
	return claims, nil
}

func field(s, name string) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != 64 {
		return nil, sdk.BadEvidence("%s evidence: %s is not 64 bytes of standard base64", TEE, name)
	}
	return b, nil
}

// pad right-pads b with zeros, or truncates it, to n bytes.
func pad(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}
