package snp

import (
	"context"
	"errors"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/pluginclient"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/verifier"
)

// pluginBinary is the real plugin binary (make build's, or built once).
func pluginBinary(t testing.TB) string { return plugintest.Binary(t, "kbs-plugin-verifier-snp") }

func startProcess(t testing.TB, config string) *pluginclient.Client {
	t.Helper()
	return plugintest.StartProcess(t, pluginBinary(t), []byte(config))
}

// TestProcess runs the real binary through go-plugin, as kbs-host does.
func TestProcess(t *testing.T) {
	c := startProcess(t, `{"kds_disabled":true}`)
	if m := c.Metadata(); m.Name != "snp" || len(m.TEETypes) != 1 || m.TEETypes[0] != TEE {
		t.Errorf("metadata = %+v", m)
	}
	ev, rd := realEvidence(t)
	claims, err := c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: rd})
	if err != nil {
		t.Fatal(err)
	}
	if claims["reported_tcb_snp"] != float64(23) || claims["policy_smt_allowed"] != true {
		t.Errorf("claims = %v", claims)
	}
	_, err = c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: rd[:32]})
	if !errors.Is(err, sdk.ErrBadEvidence) {
		t.Errorf("wrong report data: %v, want bad evidence", err)
	}
}

// BenchmarkVerifyProcess is one verification through the plugin process.
func BenchmarkVerifyProcess(b *testing.B) {
	c := startProcess(b, `{"kds_disabled":true}`)
	ev, rd := realEvidence(b)
	req := &verifier.Request{TEE: TEE, Evidence: ev, ReportData: rd, HashAlgorithm: "sha384"}
	for b.Loop() {
		if _, err := c.Verifier().Verify(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
