package rcar

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// InitDataFormat is the only init-data format the CoCo attestation
// service accepts.
const InitDataFormat = "toml"

// ErrInitData is wrapped by every init-data error.
var ErrInitData = errors.New("invalid init-data")

// InitData is a parsed init-data TOML document.
type InitData struct {
	// Digest is Algorithm applied to the whole TOML text, byte for byte.
	Digest []byte
	// Algorithm is the document's "algorithm": sha256, sha384 or sha512.
	Algorithm string
	// Version is the document's "version".
	Version string
	// Data is the document's "data" table; every value is a string.
	Data map[string]string
}

// initDataDoc mirrors the attestation service's Initdata: version and
// algorithm are required strings, data a required table of strings.
// Other top-level keys are ignored, as serde does.
type initDataDoc struct {
	Version   *string            `toml:"version"`
	Algorithm *string            `toml:"algorithm"`
	Data      *map[string]string `toml:"data"`
}

// ParseInitData checks the format, parses body and computes its digest.
func ParseInitData(format, body string) (*InitData, error) {
	if format != InitDataFormat {
		return nil, fmt.Errorf("%w: unsupported format %q", ErrInitData, format)
	}
	var doc initDataDoc
	if err := toml.Unmarshal([]byte(body), &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInitData, err)
	}
	switch {
	case doc.Version == nil:
		return nil, fmt.Errorf("%w: missing version", ErrInitData)
	case doc.Algorithm == nil:
		return nil, fmt.Errorf("%w: missing algorithm", ErrInitData)
	case doc.Data == nil:
		return nil, fmt.Errorf("%w: missing data", ErrInitData)
	}
	// Exact lowercase names only: the attestation service's serde enum
	// rejects "SHA384" or "sha-384", and so must the digest the guest
	// measured agree with one of these.
	var h crypto.Hash
	switch *doc.Algorithm {
	case "sha256":
		h = crypto.SHA256
	case "sha384":
		h = crypto.SHA384
	case "sha512":
		h = crypto.SHA512
	default:
		return nil, fmt.Errorf("%w: algorithm %q", ErrInitData, *doc.Algorithm)
	}
	hh := h.New()
	hh.Write([]byte(body))
	return &InitData{Digest: hh.Sum(nil), Algorithm: *doc.Algorithm, Version: *doc.Version, Data: *doc.Data}, nil
}

// InitDataDigest is ParseInitData reduced to the digest and its algorithm.
func InitDataDigest(format, body string) ([]byte, string, error) {
	d, err := ParseInitData(format, body)
	if err != nil {
		return nil, "", err
	}
	return d.Digest, d.Algorithm, nil
}

// Claims returns the data table as the attestation service exposes it in
// init_data_claims: "cdh.toml" and "aa.toml" become JSON objects when they
// parse as TOML (else they stay strings), and a "policy.rego" whose
// "policy_data := {…}" ends the file is replaced by "agent_policy_claims"
// holding that JSON. Numbers are json.Number.
func (d *InitData) Claims() map[string]any {
	claims := make(map[string]any, len(d.Data))
	for k, v := range d.Data {
		claims[k] = v
	}
	for _, key := range []string{"cdh.toml", "aa.toml"} {
		s, ok := d.Data[key]
		if !ok {
			continue
		}
		var v map[string]any
		if err := toml.Unmarshal([]byte(s), &v); err == nil {
			if j, err := tomlToJSON(v); err == nil {
				claims[key] = j
			}
		}
	}
	if rego, ok := d.Data["policy.rego"]; ok {
		if pd, ok := extractPolicyData(rego); ok {
			delete(claims, "policy.rego")
			claims["agent_policy_claims"] = pd
		}
	}
	return claims
}

// tomlToJSON turns TOML values (which include time types) into plain JSON
// values by a JSON round trip.
func tomlToJSON(v map[string]any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return decodeJSON(b)
}

// extractPolicyData finds the first "policy_data := {" in a Kata agent
// policy and decodes the JSON object from its brace to the end of the file,
// which must hold nothing else but whitespace (the attestation service's
// workaround until the runtime ships policy data separately).
func extractPolicyData(rego string) (any, bool) {
	const start = "policy_data := {"
	i := strings.Index(rego, start)
	if i < 0 {
		return nil, false
	}
	v, err := decodeJSON([]byte(rego[i+len(start)-1:]))
	if err != nil {
		return nil, false
	}
	return v, true
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data")
	}
	return v, nil
}
