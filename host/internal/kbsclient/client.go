// Package kbsclient speaks the KBS protocol as a guest and as an admin. It
// backs the kbs-client command, the end-to-end tests and the load harness.
package kbsclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"github.com/gokbs/kbs/host/internal/rcar"
)

// Error is a non-2xx answer with the broker's KBS error JSON.
type Error struct {
	Status int
	Type   string
	Detail string
}

func (e *Error) Error() string {
	t := e.Type
	if i := strings.LastIndex(t, "/"); i >= 0 {
		t = t[i+1:]
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, t, e.Detail)
}

// Client talks to one broker. A Client holds one guest session (its cookie
// jar); use one per simulated guest.
type Client struct {
	URL  string
	HTTP *http.Client
	// AdminToken is sent as Bearer on admin calls.
	AdminToken string
}

// New returns a client with its own cookie jar.
func New(url string) *Client {
	jar, _ := cookiejar.New(nil)
	return &Client{URL: strings.TrimRight(url, "/"), HTTP: &http.Client{Jar: jar, Timeout: 60 * time.Second}}
}

// Do sends a request and returns the body of a 2xx answer, or an *Error.
func (c *Client) Do(ctx context.Context, method, path string, body []byte, header http.Header) ([]byte, error) {
	return c.do(ctx, c.HTTP, method, path, body, header)
}

func (c *Client) do(ctx context.Context, hc *http.Client, method, path string, body []byte, header http.Header) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		var eb struct {
			Type   string `json:"type"`
			Detail string `json:"detail"`
		}
		if json.Unmarshal(out, &eb) == nil {
			e.Type, e.Detail = eb.Type, eb.Detail
		} else {
			e.Detail = string(out)
		}
		return nil, e
	}
	return out, nil
}

// Challenge is the broker's answer to auth.
type Challenge struct {
	Nonce       string          `json:"nonce"`
	ExtraParams json.RawMessage `json:"extra-params"`
}

// Auth starts a handshake for tee.
func (c *Client) Auth(ctx context.Context, tee string) (*Challenge, error) {
	body, _ := json.Marshal(map[string]any{
		"version":      "0.4.0",
		"tee":          tee,
		"extra-params": map[string]any{"supported-hash-algorithms": []string{"sha384"}},
	})
	out, err := c.Do(ctx, http.MethodPost, "/kbs/v0/auth", body, nil)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	var ch Challenge
	if err := json.Unmarshal(out, &ch); err != nil {
		return nil, fmt.Errorf("auth: challenge: %w", err)
	}
	return &ch, nil
}

// Evidence makes the TEE evidence for a runtime-data digest.
type Evidence func(reportData []byte) (json.RawMessage, error)

// Attest answers the challenge with evidence bound to the nonce and the
// TEE public key, and returns the attestation token.
func (c *Client) Attest(ctx context.Context, ch *Challenge, teePubKey json.RawMessage, evidence Evidence) (string, error) {
	digest, err := rcar.Primary(ch.Nonce, teePubKey, "").Digest("sha384")
	if err != nil {
		return "", fmt.Errorf("attest: %w", err)
	}
	ev, err := evidence(digest)
	if err != nil {
		return "", fmt.Errorf("attest: evidence: %w", err)
	}
	body, _ := json.Marshal(map[string]any{
		"runtime-data": map[string]any{"nonce": ch.Nonce, "tee-pubkey": teePubKey},
		"tee-evidence": map[string]any{"primary_evidence": ev, "additional_evidence": ""},
	})
	out, err := c.Do(ctx, http.MethodPost, "/kbs/v0/attest", body, nil)
	if err != nil {
		return "", fmt.Errorf("attest: %w", err)
	}
	var resp struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(out, &resp); err != nil || resp.Token == "" {
		return "", fmt.Errorf("attest: no token in %q", out)
	}
	return resp.Token, nil
}

// GetResource fetches the JWE of a resource, with the session cookie or,
// when bearer is set, with that token only.
func (c *Client) GetResource(ctx context.Context, path, bearer string) ([]byte, error) {
	h := http.Header{}
	hc := c.HTTP
	if bearer != "" {
		h.Set("Authorization", "Bearer "+bearer)
		// Bearer alone, without the cookie jar, as the guest's Confidential
		// Data Hub sends it.
		hc = &http.Client{Timeout: c.HTTP.Timeout, Transport: c.HTTP.Transport}
	}
	out, err := c.do(ctx, hc, http.MethodGet, "/kbs/v0/resource/"+path, nil, h)
	if err != nil {
		return nil, fmt.Errorf("get-resource %s: %w", path, err)
	}
	return out, nil
}

func (c *Client) adminHeader() http.Header {
	h := http.Header{}
	if c.AdminToken != "" {
		h.Set("Authorization", "Bearer "+c.AdminToken)
	}
	return h
}

// SetResource stores a resource (admin).
func (c *Client) SetResource(ctx context.Context, path string, data []byte) error {
	h := c.adminHeader()
	h.Set("Content-Type", "application/octet-stream")
	_, err := c.Do(ctx, http.MethodPost, "/kbs/v0/resource/"+path, data, h)
	if err != nil {
		return fmt.Errorf("set-resource %s: %w", path, err)
	}
	return nil
}

// DeleteResource removes a resource (admin).
func (c *Client) DeleteResource(ctx context.Context, path string) error {
	if _, err := c.Do(ctx, http.MethodDelete, "/kbs/v0/resource/"+path, nil, c.adminHeader()); err != nil {
		return fmt.Errorf("delete-resource %s: %w", path, err)
	}
	return nil
}

// StatusOf returns the HTTP status of a client error, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// SetResourcePolicy uploads a resource policy (Rego), global when scope is
// "", else for a "repo" or "repo/type" prefix.
func (c *Client) SetResourcePolicy(ctx context.Context, rego []byte, scope string) error {
	body, _ := json.Marshal(map[string]string{"policy": base64.RawURLEncoding.EncodeToString(rego), "scope": scope})
	if _, err := c.Do(ctx, http.MethodPost, "/kbs/v0/resource-policy", body, c.adminHeader()); err != nil {
		return fmt.Errorf("set-resource-policy: %w", err)
	}
	return nil
}

// GetResourcePolicy returns the Rego text of the global or a scoped policy.
func (c *Client) GetResourcePolicy(ctx context.Context, scope string) ([]byte, error) {
	q := ""
	if scope != "" {
		q = "?scope=" + url.QueryEscape(scope)
	}
	out, err := c.Do(ctx, http.MethodGet, "/kbs/v0/resource-policy"+q, nil, c.adminHeader())
	if err != nil {
		return nil, fmt.Errorf("get-resource-policy: %w", err)
	}
	var resp struct {
		Policy string `json:"policy"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("get-resource-policy: %w", err)
	}
	return base64.RawURLEncoding.DecodeString(resp.Policy)
}

// SetAttestationPolicy uploads an attestation policy under id.
func (c *Client) SetAttestationPolicy(ctx context.Context, id string, rego []byte) error {
	body, _ := json.Marshal(map[string]string{"policy_id": id, "policy": base64.RawURLEncoding.EncodeToString(rego), "type": "rego"})
	if _, err := c.Do(ctx, http.MethodPost, "/kbs/v0/attestation-policy", body, c.adminHeader()); err != nil {
		return fmt.Errorf("set-attestation-policy: %w", err)
	}
	return nil
}

// SetReferenceValue registers one reference value with the sample
// extractor: name → value (usually a JSON array of accepted values).
func (c *Client) SetReferenceValue(ctx context.Context, name string, value json.RawMessage) error {
	payload, _ := json.Marshal(map[string]json.RawMessage{name: value})
	return c.PostReferenceValueMessage(ctx, mustJSON(map[string]string{
		"version": "0.1.0", "type": "sample", "payload": base64.StdEncoding.EncodeToString(payload),
	}))
}

// PostReferenceValueMessage sends an RVPS message as it is.
func (c *Client) PostReferenceValueMessage(ctx context.Context, msg []byte) error {
	if _, err := c.Do(ctx, http.MethodPost, "/kbs/v0/reference-value", msg, c.adminHeader()); err != nil {
		return fmt.Errorf("set-reference-value: %w", err)
	}
	return nil
}

// GetReferenceValue returns a reference value's JSON.
func (c *Client) GetReferenceValue(ctx context.Context, name string) (json.RawMessage, error) {
	out, err := c.Do(ctx, http.MethodGet, "/kbs/v0/reference-value/"+url.PathEscape(name), nil, c.adminHeader())
	if err != nil {
		return nil, fmt.Errorf("get-reference-value: %w", err)
	}
	return bytes.TrimSpace(out), nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// ListResources lists resource paths (admin), of one repository or all.
func (c *Client) ListResources(ctx context.Context, repo string) ([]string, error) {
	q := ""
	if repo != "" {
		q = "?repo=" + url.QueryEscape(repo)
	}
	out, err := c.Do(ctx, http.MethodGet, "/kbs/v0/resources"+q, nil, c.adminHeader())
	if err != nil {
		return nil, fmt.Errorf("list-resources: %w", err)
	}
	var paths []string
	if err := json.Unmarshal(out, &paths); err != nil {
		return nil, fmt.Errorf("list-resources: %w", err)
	}
	return paths, nil
}
