package vtpm

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

var (
	errTooLong = errors.New("too long")
	errEmpty   = errors.New("empty")
)

func errMissing(name string) error        { return fmt.Errorf("%s is missing", name) }
func errLength(got, want int) error       { return fmt.Errorf("%d bytes, want %d", got, want) }
func prefix(name string, err error) error { return fmt.Errorf("%s: %w", name, err) }
func itoa(i int) string                   { return strconv.Itoa(i) }

// members reads a JSON object into its members, refusing a repeated name
// (serde refuses a repeated field; Go would keep the last one).
func members(raw []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("%q appears twice", name)
		}
		m[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return m, nil
}

// array reads a JSON array of at most max elements.
func array(raw []byte, max int) ([]json.RawMessage, error) {
	if !startsWith(raw, '[') {
		return nil, errors.New("not a JSON array")
	}
	var a []json.RawMessage
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, err
	}
	if len(a) > max {
		return nil, fmt.Errorf("%d elements, at most %d", len(a), max)
	}
	return a, nil
}

// intBytes reads a JSON array of integers 0..255 (serde's Vec<u8>). It
// scans the digits itself: decoding thousands of numbers through
// encoding/json costs ten times more, and the input is already valid JSON
// (members checked it).
func intBytes(raw []byte, max int) ([]byte, error) {
	errNotBytes := errors.New("not an array of bytes")
	i := skipSpace(raw, 0)
	if i == len(raw) || raw[i] != '[' {
		return nil, errNotBytes
	}
	b := make([]byte, 0, min(len(raw)/2, max))
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == ']' {
		return b, nil
	}
	for {
		start, v := i, 0
		for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' && v <= 255 {
			v = 10*v + int(raw[i]-'0')
			i++
		}
		switch {
		case i == start:
			return nil, errNotBytes
		case v > 255:
			return nil, fmt.Errorf("element %d is not a byte", len(b))
		case raw[start] == '0' && i-start > 1:
			return nil, errNotBytes // JSON has no leading zeros
		}
		if len(b) == max {
			return nil, errTooLong
		}
		b = append(b, byte(v))
		i = skipSpace(raw, i)
		if i == len(raw) {
			return nil, errNotBytes
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case ']':
			if skipSpace(raw, i+1) != len(raw) {
				return nil, errNotBytes
			}
			return b, nil
		default:
			return nil, errNotBytes
		}
	}
}

func skipSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
		i++
	}
	return i
}

// jsonString reads a JSON string of at most maxLen characters.
func jsonString(raw []byte, maxLen int) (string, error) {
	if !startsWith(raw, '"') {
		return "", errors.New("not a string")
	}
	if len(raw) > maxLen+2 {
		return "", errTooLong
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	return s, nil
}

// hexString reads a hex string (either case) of at most max bytes.
func hexString(raw []byte, max int) ([]byte, error) {
	s, err := jsonString(raw, 2*max)
	if err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("not hex")
	}
	return b, nil
}

// base64URL reads URL-safe base64, padded or not (serde_with's
// Base64<UrlSafe> writes padding and accepts either), of at most max bytes.
func base64URL(raw []byte, max int) ([]byte, error) {
	s, err := jsonString(raw, base64.URLEncoding.EncodedLen(max))
	if err != nil {
		return nil, err
	}
	enc := base64.RawURLEncoding
	if len(s) > 0 && s[len(s)-1] == '=' {
		enc = base64.URLEncoding
	}
	b, err := enc.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("not URL-safe base64")
	}
	if len(b) == 0 {
		return nil, errEmpty
	}
	return b, nil
}

func startsWith(raw []byte, c byte) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == c
}
