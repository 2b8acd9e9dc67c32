package plugins

import (
	"context"
	"testing"

	"github.com/gokbs/kbs/host/internal/plugins/testplugins"
	"github.com/gokbs/kbs/sdk/pluginclient"
	"github.com/gokbs/kbs/sdk/serve"
	"github.com/gokbs/kbs/sdk/verifier"
)

// BenchmarkVerify measures one verify call made directly, through the SDK's
// gRPC adapters in-process, and through the manager to a plugin process.
// The test verifier does the sample verifier's work, so direct/test against
// process/test is the cost of the process boundary; process/sample is the
// real plugin.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	run := func(b *testing.B, v verifier.Verifier, req *verifier.Request) {
		if _, err := v.Verify(ctx, req); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("direct/test", func(b *testing.B) {
		run(b, &testplugins.Verifier{}, testRequest(""))
	})
	b.Run("in-process-grpc/test", func(b *testing.B) {
		c, err := pluginclient.StartInProcess(ctx, &serve.Options{Name: "test", TEETypes: []string{testplugins.TEE}, Verifier: &testplugins.Verifier{}})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Kill()
		run(b, c.Verifier(), testRequest(""))
	})
	for _, name := range []string{"test", "sample"} {
		b.Run("process/"+name, func(b *testing.B) {
			dir := install(b, "kbs-plugin-verifier-"+name)
			m := startManager(b, testOptions(b, dir), Spec{Kind: "verifier", Name: name})
			v, err := m.Verifier(name)
			if err != nil {
				b.Fatal(err)
			}
			req := testRequest("")
			if name == "sample" {
				req = sampleRequest()
			}
			run(b, v, req)
		})
	}
}
