package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gokbs/kbs/host/internal/guest"
)

// TestObservability: a request's X-Request-Id comes back in the answer and
// in the audit line of the release it caused (JSON logs); /metrics counts
// the attestation and the release; no token or secret reaches the log.
func TestObservability(t *testing.T) {
	br := startDev(t, "", "--log-json")
	secret := "observable secret"
	writeResource(t, br.DevDir, "default/key/obs", []byte(secret))
	k, _ := guest.NewKey(guest.KindECP256)
	c, tok := handshake(t, br.URL, k)

	const id = "guest-42.boot:7"
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, br.URL+"/kbs/v0/resource/default/key/obs", nil)
	req.Header.Set("X-Request-Id", id)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") != id {
		t.Fatalf("status %d, X-Request-Id %q; want 200 and %q", resp.StatusCode, resp.Header.Get("X-Request-Id"), id)
	}
	// An ID is made when the guest sends none.
	resp, err = http.Get(br.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); len(got) != 32 {
		t.Errorf("made-up request ID %q, want 32 hex digits", got)
	}

	found := false
	sc := bufio.NewScanner(strings.NewReader(br.logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["@message"] == "resource released" && m["request_id"] == id {
			found = true
		}
	}
	if !found {
		t.Errorf("no JSON audit line of the release carries request_id %q:\n%s", id, br.logs.String())
	}
	logs := br.logs.String()
	for name, leak := range map[string]string{"token": tok, "token signature": tok[strings.LastIndexByte(tok, '.')+1:], "resource": secret} {
		if strings.Contains(logs, leak) {
			t.Errorf("the %s is in the log", name)
		}
	}
	for _, series := range []string{
		// Dev mode has no reference values: the sample TEE is contraindicated
		// (and released by the permissive dev policy).
		`kbs_attestations_total{status="contraindicated",tee="sample"}`,
		`kbs_resource_decisions_total{decision="released"}`,
		`kbs_plugin_calls_total{method="Verify",outcome="ok",plugin="verifier/sample"}`,
		`kbs_plugin_calls_total{method="Issue",outcome="ok",plugin="token/ear"}`,
		`kbs_plugin_calls_total{method="Get",outcome="ok",plugin="resource/fs"}`,
		`kbs_http_requests_total{code="200",endpoint="/kbs/v0/attest",method="POST"}`,
		`kbs_plugin_up{plugin="verifier/sample"}`,
	} {
		if v := metric(t, br.URL, series); v < 1 {
			t.Errorf("%s = %v, want at least 1", series, v)
		}
	}
}
