package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gokbs/kbs/host/internal/guest"
	"github.com/gokbs/kbs/host/internal/kbsclient"
	"github.com/gokbs/kbs/host/internal/rcar"
)

// conn is one simulated guest's HTTP/1.1 keep-alive connection, written
// and read in the guest's own goroutine. net/http's client does the same
// with two goroutines per connection and more per request; on a machine
// shared with the broker, the harness's lighter touch leaves the CPUs to
// the broker. The bytes on the wire are a guest's.
type conn struct {
	addr, host string
	c          net.Conn
	r          *bufio.Reader
	buf        bytes.Buffer
	used       bool // c has carried a request already
}

func newConn(rawURL string) (*conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("the lean guest speaks plain http, not %s", u.Scheme)
	}
	return &conn{addr: u.Host, host: u.Host}, nil
}

func (c *conn) close() {
	if c.c != nil {
		_ = c.c.Close()
		c.c, c.used = nil, false
	}
}

// do sends one request and returns the status, the session cookie the
// answer sets (if any) and the body.
func (c *conn) do(ctx context.Context, method, path, cookie, bearer string, body []byte) (int, string, []byte, error) {
	reused := c.c != nil && c.used
	status, setCookie, out, err := c.try(ctx, method, path, cookie, bearer, body)
	var ke *kbsclient.Error
	if err != nil && reused && !errors.As(err, &ke) && ctx.Err() == nil {
		// The broker closed an idle keep-alive connection: once more.
		return c.try(ctx, method, path, cookie, bearer, body)
	}
	return status, setCookie, out, err
}

func (c *conn) try(ctx context.Context, method, path, cookie, bearer string, body []byte) (int, string, []byte, error) {
	if c.c == nil {
		d := net.Dialer{Timeout: 10 * time.Second}
		nc, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return 0, "", nil, err
		}
		c.c, c.r = nc, bufio.NewReaderSize(nc, 16<<10)
	}
	// Not the context's deadline: a request in flight when a run ends
	// finishes (and is counted) rather than failing as a timeout.
	_ = c.c.SetDeadline(time.Now().Add(60 * time.Second))
	b := &c.buf
	b.Reset()
	b.WriteString(method)
	b.WriteByte(' ')
	b.WriteString(path)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(c.host)
	b.WriteString("\r\nUser-Agent: kbs-bench\r\n")
	if cookie != "" {
		b.WriteString("Cookie: ")
		b.WriteString(cookie)
		b.WriteString("\r\n")
	}
	if bearer != "" {
		b.WriteString("Authorization: Bearer ")
		b.WriteString(bearer)
		b.WriteString("\r\n")
	}
	if body != nil {
		b.WriteString("Content-Type: application/json\r\nContent-Length: ")
		b.WriteString(strconv.Itoa(len(body)))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	if _, err := c.c.Write(b.Bytes()); err != nil {
		c.close()
		return 0, "", nil, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.close()
		return 0, "", nil, err
	}
	c.used = true
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	if err != nil || resp.Close {
		c.close()
	}
	if err != nil {
		return 0, "", nil, err
	}
	setCookie := ""
	for _, v := range resp.Header.Values("Set-Cookie") {
		if rest, ok := strings.CutPrefix(v, "kbs-session-id="); ok {
			id, _, _ := strings.Cut(rest, ";")
			setCookie = "kbs-session-id=" + id
		}
	}
	if resp.StatusCode/100 != 2 {
		e := &kbsclient.Error{Status: resp.StatusCode}
		var eb struct{ Type, Detail string }
		if json.Unmarshal(out, &eb) == nil {
			e.Type, e.Detail = eb.Type, eb.Detail
		}
		return resp.StatusCode, setCookie, out, e
	}
	return resp.StatusCode, setCookie, out, nil
}

var authBody = []byte(`{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha384"]}}`)

// leanHandshake is target.handshake on c: the same guest, the same bytes.
func (t *target) leanHandshake(ctx context.Context, c *conn) (string, error) {
	k, err := guest.NewKey(guest.KindECP256)
	if err != nil {
		return "", err
	}
	_, cookie, out, err := c.do(ctx, http.MethodPost, "/kbs/v0/auth", "", "", authBody)
	if err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	if cookie == "" {
		return "", errors.New("auth: no session cookie")
	}
	var ch kbsclient.Challenge
	if err := json.Unmarshal(out, &ch); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	jwk, err := k.PublicJWKJSON()
	if err != nil {
		return "", err
	}
	digest, err := rcar.Primary(ch.Nonce, jwk, "").Digest("sha384")
	if err != nil {
		return "", err
	}
	att, _ := json.Marshal(map[string]any{
		"runtime-data": map[string]any{"nonce": ch.Nonce, "tee-pubkey": jwk},
		"tee-evidence": map[string]any{"primary_evidence": guest.NewSampleEvidence(digest).JSON(), "additional_evidence": ""},
	})
	_, _, out, err = c.do(ctx, http.MethodPost, "/kbs/v0/attest", cookie, "", att)
	if err != nil {
		return "", fmt.Errorf("attest: %w", err)
	}
	var resp struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(out, &resp); err != nil || resp.Token == "" {
		return "", fmt.Errorf("attest: no token in %q", out)
	}
	return resp.Token, t.leanFetch(ctx, c, k, cookie, "")
}

// leanFetch gets the resource with the cookie or the bearer token and
// opens it.
func (t *target) leanFetch(ctx context.Context, c *conn, k *guest.Key, cookie, bearer string) error {
	_, _, out, err := c.do(ctx, http.MethodGet, "/kbs/v0/resource/"+t.resource, cookie, bearer, nil)
	if err != nil {
		return fmt.Errorf("get-resource: %w", err)
	}
	pt, err := k.DecryptJSON(out)
	if err != nil {
		return err
	}
	if !bytes.Equal(pt, t.secret) {
		return errMismatch
	}
	return nil
}
