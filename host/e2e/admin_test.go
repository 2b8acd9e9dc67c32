package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gokbs/kbs/host/internal/adminauth"
	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbsclient"
)

func adminClient(t *testing.T, br *broker) *kbsclient.Client {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(br.DevDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	c := kbsclient.New(br.URL)
	c.AdminToken = strings.TrimSpace(string(tok))
	return c
}

func fetch(t *testing.T, url, path string) (string, int) {
	t.Helper()
	k, _ := guest.NewKey(guest.KindECP256)
	c, _ := handshake(t, url, k)
	body, err := c.GetResource(context.Background(), path, "")
	if err != nil {
		return "", kbsclient.StatusOf(err)
	}
	plain, err := k.DecryptJSON(body)
	if err != nil {
		t.Fatal(err)
	}
	return string(plain), 200
}

// TestAdminPolicyLifecycle: set a resource and a policy through the admin
// API, fetch as a guest, deny by policy, and find everything again after
// the host is SIGKILLed and restarted on the same state.
func TestAdminPolicyLifecycle(t *testing.T) {
	dir := t.TempDir()
	br := startDev(t, dir)
	ctx := context.Background()
	adm := adminClient(t, br)

	if err := adm.SetResource(ctx, "default/key/lifecycle", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if got, st := fetch(t, br.URL, "default/key/lifecycle"); st != 200 || got != "v1" {
		t.Fatalf("fetch = %q %d", got, st)
	}
	allowKey := []byte("package policy\nimport rego.v1\ndefault allow := false\nallow if data[\"resource-path\"][1] == \"key\"\n")
	if err := adm.SetResourcePolicy(ctx, allowKey, ""); err != nil {
		t.Fatal(err)
	}
	if err := adm.SetResource(ctx, "default/other/x", []byte("no")); err != nil {
		t.Fatal(err)
	}
	if _, st := fetch(t, br.URL, "default/other/x"); st != 403 {
		t.Fatalf("fetch of a denied path: status %d, want 403", st)
	}
	// A scoped policy: most specific wins.
	if err := adm.SetResourcePolicy(ctx, []byte("package policy\ndefault allow := true\n"), "default/other"); err != nil {
		t.Fatal(err)
	}
	if got, st := fetch(t, br.URL, "default/other/x"); st != 200 || got != "no" {
		t.Fatalf("scoped allow: %q %d", got, st)
	}
	denyAll := []byte("package policy\ndefault allow := false\n")
	if err := adm.SetResourcePolicy(ctx, denyAll, ""); err != nil {
		t.Fatal(err)
	}
	if _, st := fetch(t, br.URL, "default/key/lifecycle"); st != 403 {
		t.Fatalf("after deny-all: status %d, want 403", st)
	}
	if err := adm.SetReferenceValue(ctx, "launch_digest", json.RawMessage(`["abcde"]`)); err != nil {
		t.Fatal(err)
	}
	// A broken policy is refused with the compiler's position.
	err := adm.SetResourcePolicy(ctx, []byte("package policy\nallow if {\n"), "")
	if kbsclient.StatusOf(err) != 400 || !strings.Contains(err.Error(), "line") {
		t.Fatalf("broken policy: %v, want 400 naming the line", err)
	}

	br.kill() // SIGKILL: no clean shutdown
	br2 := startDev(t, dir)
	adm2 := adminClient(t, br2)
	if _, st := fetch(t, br2.URL, "default/key/lifecycle"); st != 403 {
		t.Fatalf("after restart the deny-all policy is gone: status %d", st)
	}
	rego, err := adm2.GetResourcePolicy(ctx, "")
	if err != nil || string(rego) != string(denyAll) {
		t.Fatalf("global policy after restart = %q, %v", rego, err)
	}
	if got, st := fetch(t, br2.URL, "default/other/x"); st != 200 || got != "no" {
		t.Fatalf("scoped policy lost in restart: %q %d", got, st)
	}
	v, err := adm2.GetReferenceValue(ctx, "launch_digest")
	if err != nil || string(v) != `["abcde"]` {
		t.Fatalf("reference value after restart = %s, %v", v, err)
	}
}

// TestAdminAuthentication: dev mode's identity provider accepts its own
// token, and refuses none, an expired one, a foreign key, a missing role
// and a role without access.
func TestAdminAuthentication(t *testing.T) {
	br := startDev(t, "")
	ctx := context.Background()
	priv, err := os.ReadFile(filepath.Join(br.DevDir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	otherPriv, _, _ := adminauth.GenerateKeyPair()
	mint := func(key []byte, claims adminauth.TokenClaims, ttl time.Duration) string {
		tok, err := adminauth.MintToken(key, claims, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := adminauth.TokenClaims{Issuer: "kbs-dev", Subject: "t", Role: "admin"}
	tests := map[string]struct {
		token  string
		status int
	}{
		"dev token":       {strings.TrimSpace(adminClient(t, br).AdminToken), 200},
		"minted":          {mint(priv, good, time.Minute), 200},
		"no token":        {"", 401},
		"garbage":         {"abc.def.ghi", 401},
		"wrong key":       {mint(otherPriv, good, time.Minute), 401},
		"wrong issuer":    {mint(priv, adminauth.TokenClaims{Issuer: "evil", Subject: "t", Role: "admin"}, time.Minute), 401},
		"missing role":    {mint(priv, adminauth.TokenClaims{Issuer: "kbs-dev", Subject: "t"}, time.Minute), 401},
		"role not in ACL": {mint(priv, adminauth.TokenClaims{Issuer: "kbs-dev", Subject: "t", Role: "auditor"}, time.Minute), 403},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := kbsclient.New(br.URL)
			c.AdminToken = tc.token
			err := c.SetReferenceValue(ctx, "x", json.RawMessage(`[1]`))
			if st := kbsclient.StatusOf(err); tc.status == 200 && err != nil || tc.status != 200 && st != tc.status {
				t.Fatalf("status = %d (%v), want %d", st, err, tc.status)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		tok := mint(priv, good, time.Second)
		time.Sleep(62 * time.Second) // beyond the 60 s leeway trustee also allows
		c := kbsclient.New(br.URL)
		c.AdminToken = tok
		if err := c.SetReferenceValue(ctx, "x", json.RawMessage(`[1]`)); kbsclient.StatusOf(err) != 401 {
			t.Fatalf("expired token: %v, want 401", err)
		}
	})
}
