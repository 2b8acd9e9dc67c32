package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gokbs/kbs/sdk"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestMetrics(t *testing.T) {
	m := New()
	m.PluginCall("verifier/sample", "Verify", time.Millisecond, nil)
	m.PluginCall("verifier/sample", "Verify", time.Millisecond, sdk.BadEvidence("x"))
	m.PluginCall("verifier/sample", "Verify", time.Millisecond, fmt.Errorf("call: %w", context.DeadlineExceeded))
	m.PluginCall("resource/fs", "Get", time.Millisecond, sdk.Unavailable("down"))
	m.Attestation("sample", "affirming")
	m.Attestation("sample", "failed")
	m.Resource(true)
	m.Resource(false)
	m.Resource(false)
	m.Request("", "GET", 418, time.Millisecond)
	m.WatchPlugins(func() []PluginState {
		return []PluginState{{ID: "verifier/sample", Up: true, Restarts: 2}, {ID: "resource/fs"}}
	})
	m.WatchSessions(func() int { return 7 })
	text := scrape(t, m)
	for _, want := range []string{
		`kbs_plugin_calls_total{method="Verify",outcome="ok",plugin="verifier/sample"} 1`,
		`kbs_plugin_calls_total{method="Verify",outcome="bad_evidence",plugin="verifier/sample"} 1`,
		`kbs_plugin_calls_total{method="Verify",outcome="deadline",plugin="verifier/sample"} 1`,
		`kbs_plugin_calls_total{method="Get",outcome="unavailable",plugin="resource/fs"} 1`,
		`kbs_plugin_call_duration_seconds_count{method="Verify",plugin="verifier/sample"} 3`,
		`kbs_attestations_total{status="affirming",tee="sample"} 1`,
		`kbs_attestations_total{status="failed",tee="sample"} 1`,
		`kbs_resource_decisions_total{decision="released"} 1`,
		`kbs_resource_decisions_total{decision="denied"} 2`,
		`kbs_http_requests_total{code="418",endpoint="other",method="GET"} 1`,
		`kbs_plugin_up{plugin="verifier/sample"} 1`,
		`kbs_plugin_up{plugin="resource/fs"} 0`,
		`kbs_plugin_restarts_total{plugin="verifier/sample"} 2`,
		`kbs_sessions 7`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// A nil *Metrics is a valid, silent sink.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.Request("/", "GET", 200, time.Second)
	m.Attestation("sample", "affirming")
	m.Resource(true)
	m.PluginCall("verifier/sample", "Verify", time.Second, nil)
	m.Error("X")
	m.RateLimited()
	m.WatchPlugins(nil)
	m.WatchSessions(nil)
}
