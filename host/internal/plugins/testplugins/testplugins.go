// Package testplugins holds a verifier that the plugin manager's tests run
// as a real plugin process and call directly in benchmarks. It can be told
// through its evidence to hang or to crash mid-call.
package testplugins

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/verifier"
)

// TEE is the TEE type the test verifier declares.
const TEE = "test"

// Verifier does the sample verifier's work (decode, compare report data,
// build claims), so that benchmarks compare like with like.
type Verifier struct {
	tag atomic.Pointer[string]
}

var (
	_ verifier.Verifier = (*Verifier)(nil)
	_ sdk.Configurer    = (*Verifier)(nil)
)

// Config is the verifier's settings. Tag is echoed in every claim set, so a
// test can see that a restarted plugin was configured again.
type Config struct {
	Tag string `json:"tag"`
}

// Configure takes Config.
func (v *Verifier) Configure(_ context.Context, raw []byte) error {
	var cfg Config
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return err
	}
	v.tag.Store(&cfg.Tag)
	return nil
}

// Evidence is what the test verifier accepts.
type Evidence struct {
	SVN        string `json:"svn,omitempty"`
	ReportData string `json:"report_data,omitempty"`
	// Sleep makes Verify hang for this long, ignoring its context.
	Sleep string `json:"sleep,omitempty"`
	// Exit makes the process exit with this status in the middle of the call.
	Exit *int `json:"exit,omitempty"`
}

// Verify checks that the report data is bound and returns claims.
func (v *Verifier) Verify(ctx context.Context, req *verifier.Request) (verifier.Claims, error) {
	var ev Evidence
	if err := json.Unmarshal(req.Evidence, &ev); err != nil {
		return nil, sdk.BadEvidence("test evidence: %v", err)
	}
	if ev.Exit != nil {
		os.Exit(*ev.Exit)
	}
	if ev.Sleep != "" {
		d, err := time.ParseDuration(ev.Sleep)
		if err != nil {
			return nil, sdk.BadEvidence("test evidence: sleep: %v", err)
		}
		time.Sleep(d)
	}
	rd, err := base64.StdEncoding.DecodeString(ev.ReportData)
	if err != nil {
		return nil, sdk.BadEvidence("test evidence: report_data: %v", err)
	}
	if !bytes.Equal(rd, req.ReportData) {
		return nil, sdk.BadEvidence("test evidence: report_data does not match")
	}
	tag := ""
	if t := v.tag.Load(); t != nil {
		tag = *t
	}
	return verifier.Claims{"svn": ev.SVN, "report_data": ev.ReportData, "tag": tag,
		"pid": os.Getpid(), "env": envNames()}, nil
}

// envNames lists the names (not the values) of the process's environment,
// so that a test can check what the host passed on.
func envNames() []string {
	env := os.Environ()
	names := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		names = append(names, name)
	}
	return names
}
