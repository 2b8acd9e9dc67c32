package sample

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/verifier"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// digest is a runtime-data digest as the host computes it (SHA-384).
var digest = func() []byte { d := sha512.Sum384([]byte("runtime data")); return d[:] }()

func evidenceJSON(svn any, reportData any) json.RawMessage {
	m := map[string]any{}
	if svn != nil {
		m["svn"] = svn
	}
	if reportData != nil {
		m["report_data"] = reportData
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func TestVerifyGolden(t *testing.T) {
	initData := sha512.Sum384([]byte("[data]\n"))
	tests := map[string]struct {
		req *verifier.Request
	}{
		"attester evidence": {req: &verifier.Request{
			TEE:        "sample",
			Evidence:   evidenceJSON("1", base64.StdEncoding.EncodeToString(digest)),
			ReportData: digest,
		}},
		"with init-data": {req: &verifier.Request{
			TEE:            "sample",
			Evidence:       evidenceJSON("1", base64.StdEncoding.EncodeToString(digest)),
			ReportData:     digest,
			InitDataDigest: initData[:],
		}},
		"numeric svn": {req: &verifier.Request{
			TEE:        "sample",
			Evidence:   json.RawMessage(`{"svn":7,"report_data":"` + base64.StdEncoding.EncodeToString(digest) + `","extra":true}`),
			ReportData: digest,
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			claims, err := New().Verify(context.Background(), tc.req)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			plugintest.GoldenJSON(t, filepath.Join("testdata", strings.ReplaceAll(name, " ", "-")+".golden.json"), claims, *update)
		})
	}
}

func TestVerifyErrors(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(digest)
	other := sha512.Sum384([]byte("other runtime data"))
	tests := map[string]struct {
		tee      string
		evidence json.RawMessage
		want     error
		msg      string
	}{
		"other TEE":            {tee: "snp", evidence: evidenceJSON("1", good), want: sdk.ErrUnsupported, msg: `"snp"`},
		"sampledevice":         {tee: "sampledevice", evidence: evidenceJSON("1", good), want: sdk.ErrUnsupported},
		"report_data mismatch": {evidence: evidenceJSON("1", base64.StdEncoding.EncodeToString(other[:])), want: sdk.ErrBadEvidence, msg: "does not match"},
		"report_data padded to 64 bytes": {
			evidence: evidenceJSON("1", base64.StdEncoding.EncodeToString(append(append([]byte{}, digest...), make([]byte, 16)...))),
			want:     sdk.ErrBadEvidence, msg: "does not match",
		},
		"report_data truncated": {evidence: evidenceJSON("1", base64.StdEncoding.EncodeToString(digest[:32])), want: sdk.ErrBadEvidence},
		"report_data empty":     {evidence: evidenceJSON("1", ""), want: sdk.ErrBadEvidence},
		"report_data url base64": {
			evidence: evidenceJSON("1", base64.RawURLEncoding.EncodeToString(digest)+"_-"),
			want:     sdk.ErrBadEvidence, msg: "base64",
		},
		"report_data hex":          {evidence: evidenceJSON("1", strings.Repeat("ab", 48)), want: sdk.ErrBadEvidence},
		"report_data with newline": {evidence: evidenceJSON("1", good[:20]+"\n"+good[20:]), want: sdk.ErrBadEvidence, msg: "base64"},
		"report_data not a string": {evidence: json.RawMessage(`{"svn":"1","report_data":[1,2]}`), want: sdk.ErrBadEvidence},
		"report_data missing":      {evidence: evidenceJSON("1", nil), want: sdk.ErrBadEvidence, msg: "report_data is missing"},
		"svn missing":              {evidence: evidenceJSON(nil, good), want: sdk.ErrBadEvidence, msg: "svn is missing"},
		"svn null":                 {evidence: json.RawMessage(`{"svn":null,"report_data":"` + good + `"}`), want: sdk.ErrBadEvidence},
		"svn bool":                 {evidence: evidenceJSON(true, good), want: sdk.ErrBadEvidence, msg: "svn"},
		"svn object":               {evidence: evidenceJSON(map[string]int{"a": 1}, good), want: sdk.ErrBadEvidence, msg: "svn"},
		"not JSON":                 {evidence: json.RawMessage(`svn=1`), want: sdk.ErrBadEvidence},
		"JSON array":               {evidence: json.RawMessage(`["1"]`), want: sdk.ErrBadEvidence},
		"empty":                    {evidence: nil, want: sdk.ErrBadEvidence},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tee := tc.tee
			if tee == "" {
				tee = "sample"
			}
			_, err := New().Verify(context.Background(), &verifier.Request{TEE: tee, Evidence: tc.evidence, ReportData: digest})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v (class %q), want class %q", err, sdk.ClassOf(err), sdk.ClassOf(tc.want))
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q, want it to mention %q", err, tc.msg)
			}
		})
	}
}

func TestVerifyCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := New().Verify(ctx, &verifier.Request{TEE: "sample", Evidence: evidenceJSON("1", base64.StdEncoding.EncodeToString(digest)), ReportData: digest})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestConfigure(t *testing.T) {
	tests := map[string]struct {
		config  string
		wantErr bool
	}{
		"none":         {config: ""},
		"null":         {config: "null"},
		"empty object": {config: "{}"},
		"unknown key":  {config: `{"svn":"1"}`, wantErr: true},
		"not JSON":     {config: `x`, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := New().Configure(context.Background(), []byte(tc.config))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Configure(%q) = %v, want error %v", tc.config, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("err class = %q, want invalid_argument", sdk.ClassOf(err))
			}
		})
	}
}
