// Package snp verifies AMD SEV-SNP evidence (TEE "snp") for kbs-host: the
// plugin around the plugins/lib/snp library, which does the work.
package snp

import (
	"context"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	libsnp "github.com/gokbs/kbs/plugins/lib/snp"
	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TEE is the only TEE name this verifier handles.
const TEE = "snp"

// Settings are the plugin's section of the host configuration. Every key
// is optional; the zero value verifies like trustee.
type Settings struct {
	// VMPL the report must have been requested at (0..3).
	VMPL uint32 `json:"vmpl"`
	// VCEKDir is an offline VCEK store in trustee's layout
	// (<dir>/vcek/<hwid>/<blNN_teeNN_snpNN_ucodeNN[_fmcNN]>_vcek.der or
	// .../vcek.der), consulted when the evidence carries no VCEK.
	VCEKDir string `json:"vcek_dir"`
	// KDSBaseURL is AMD's KDS or a mirror of it (default
	// https://kdsintf.amd.com).
	KDSBaseURL string `json:"kds_base_url"`
	// KDSDisabled keeps the plugin off the network.
	KDSDisabled bool `json:"kds_disabled"`
	// KDSTimeout bounds one KDS request, as a Go duration (default "10s").
	KDSTimeout string `json:"kds_timeout"`
	// CacheDir keeps fetched VCEKs across restarts (default: memory only).
	CacheDir string `json:"cache_dir"`
	// MinReportVersion is the oldest report version accepted (2..5,
	// default 3 as trustee).
	MinReportVersion uint32 `json:"min_report_version"`

	testSettings
}

// Verifier is the snp verifier plugin. Configure swaps in a new library
// verifier; Verify may run concurrently with it.
type Verifier struct {
	lib atomic.Pointer[libsnp.Verifier]
	// adjust, set by tests, changes each library verifier that Configure
	// builds (to trust test roots).
	adjust func(*libsnp.Verifier) error
}

var (
	_ verifier.Verifier = (*Verifier)(nil)
	_ sdk.Configurer    = (*Verifier)(nil)
)

// New returns a verifier with the default settings.
func New() *Verifier {
	v := &Verifier{}
	lib, err := libsnp.New(libsnp.Options{})
	if err != nil {
		panic(err) // the default options are valid
	}
	v.lib.Store(lib)
	return v
}

// Configure applies the settings (strictly decoded: an unknown key is an
// error).
func (v *Verifier) Configure(_ context.Context, config []byte) error {
	var s Settings
	if err := sdk.DecodeConfig(config, &s); err != nil {
		return err
	}
	opts, err := s.options()
	if err != nil {
		return err
	}
	lib, err := libsnp.New(opts)
	if err != nil {
		return err
	}
	if err := s.testSettings.apply(lib); err != nil {
		return sdk.InvalidArgument("snp settings: %v", err)
	}
	if v.adjust != nil {
		if err := v.adjust(lib); err != nil {
			return err
		}
	}
	v.lib.Store(lib)
	return nil
}

func (s *Settings) options() (libsnp.Options, error) {
	o := libsnp.Options{
		VMPL: s.VMPL, VCEKDir: s.VCEKDir, KDSBaseURL: s.KDSBaseURL, KDSDisabled: s.KDSDisabled,
		CacheDir: s.CacheDir, MinReportVersion: s.MinReportVersion,
	}
	if s.KDSTimeout != "" {
		d, err := time.ParseDuration(s.KDSTimeout)
		if err != nil || d <= 0 {
			return o, sdk.InvalidArgument("snp settings: kds_timeout %q is not a positive duration", s.KDSTimeout)
		}
		o.KDSTimeout = d
	}
	if s.KDSBaseURL != "" {
		u, err := url.Parse(s.KDSBaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return o, sdk.InvalidArgument("snp settings: kds_base_url %q is not an http(s) URL without query", s.KDSBaseURL)
		}
	}
	if s.VCEKDir != "" {
		if fi, err := os.Stat(s.VCEKDir); err != nil || !fi.IsDir() {
			return o, sdk.InvalidArgument("snp settings: vcek_dir %q is not a directory", s.VCEKDir)
		}
	}
	if s.CacheDir != "" {
		if err := os.MkdirAll(s.CacheDir, 0o755); err != nil {
			return o, sdk.InvalidArgument("snp settings: cache_dir: %v", err)
		}
	}
	return o, nil
}

// Verify checks the evidence (see plugins/lib/snp): AMD chain, signature,
// TCB, VMPL, REPORT_DATA == pad(ReportData, 64) and, when the guest sent
// init-data, HOST_DATA == pad/trunc(InitDataDigest, 32). It returns
// trustee's SNP claims.
func (v *Verifier) Verify(ctx context.Context, req *verifier.Request) (verifier.Claims, error) {
	if req.TEE != TEE {
		return nil, sdk.Unsupported("snp verifier: TEE %q is not %q", req.TEE, TEE)
	}
	r, err := v.lib.Load().VerifyEvidence(ctx, req.Evidence, libsnp.Expected{ReportData: req.ReportData, InitDataDigest: req.InitDataDigest})
	if err != nil {
		return nil, err
	}
	return verifier.Claims(libsnp.Claims(r)), nil
}
