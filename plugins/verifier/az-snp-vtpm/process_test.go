package azsnpvtpm

import (
	"context"
	"errors"
	"testing"

	"github.com/gokbs/kbs/sdk"
	"github.com/gokbs/kbs/sdk/pluginclient"
	"github.com/gokbs/kbs/sdk/plugintest"
	"github.com/gokbs/kbs/sdk/verifier"
)

const binName = "kbs-plugin-verifier-az-snp-vtpm"

// pluginBinary is the real plugin binary (make build's, or built once).
func pluginBinary(t testing.TB) string {
	return plugintest.Binary(t, "kbs-plugin-verifier-az-snp-vtpm")
}

func startProcess(t testing.TB, config string) *pluginclient.Client {
	t.Helper()
	return plugintest.StartProcess(t, pluginBinary(t), []byte(config))
}

// TestProcess runs the real binary through go-plugin, as kbs-host does,
// with the real v2 evidence (at the current time: its VCEK is valid until
// 2032).
func TestProcess(t *testing.T) {
	ev := evidence(t, "evidence-v2.json")
	c := startProcess(t, `{}`)
	if m := c.Metadata(); m.Name != "az-snp-vtpm" || len(m.TEETypes) != 1 || m.TEETypes[0] != TEE {
		t.Errorf("metadata = %+v", m)
	}
	rd := unhex(t, v2Nonce)
	claims, err := c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: rd})
	if err != nil {
		t.Fatal(err)
	}
	if claims["report_data"] != v2Nonce || claims["tpm"].(map[string]any)["pcr00"] != v2PCR0 {
		t.Errorf("claims = %v", claims)
	}
	_, err = c.Verifier().Verify(context.Background(), &verifier.Request{TEE: TEE, Evidence: ev, ReportData: rd[:32]})
	if !errors.Is(err, sdk.ErrBadEvidence) {
		t.Errorf("wrong report data: %v, want bad evidence", err)
	}
}

// BenchmarkVerifyProcess is one verification through the plugin process.
func BenchmarkVerifyProcess(b *testing.B) {
	c := startProcess(b, `{}`)
	r := &verifier.Request{TEE: TEE, Evidence: evidence(b, "evidence-v1.json"), ReportData: []byte("challenge"), HashAlgorithm: "sha384"}
	for b.Loop() {
		if _, err := c.Verifier().Verify(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
}
