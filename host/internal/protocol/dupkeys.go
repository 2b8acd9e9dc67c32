package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// noDuplicateKeys refuses a JSON object that repeats a member, at its top
// level and inside the members named in nested. encoding/json keeps the
// last of two equal keys, and matches names regardless of case, where
// trustee's serde refuses a repeated member and matches case exactly: a
// guest, a proxy and the broker could each read a different message from
// the same bytes. Names are therefore compared case-folded. Evidence is
// left to its verifier.
//
// raw has already been decoded by encoding/json, so it is valid JSON; the
// walk below only finds member names and skips values, without copying
// them (an attestation carries large evidence).
func noDuplicateKeys(raw []byte, nested ...string) error {
	s := scanner{b: raw}
	s.space()
	if !s.eat('{') {
		return nil // not an object: nothing to repeat
	}
	var seen []string // few members: a slice beats a map
	s.space()
	if s.eat('}') {
		return nil
	}
	for {
		s.space()
		key, err := s.str()
		if err != nil {
			return err
		}
		folded := strings.ToLower(key)
		if slices.Contains(seen, folded) {
			return fmt.Errorf("member %q appears twice", key)
		}
		seen = append(seen, folded)
		s.space()
		if !s.eat(':') {
			return errBadJSON
		}
		s.space()
		start := s.i
		if err := s.value(); err != nil {
			return err
		}
		if slices.Contains(nested, key) {
			if err := noDuplicateKeys(raw[start:s.i]); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
		}
		s.space()
		if s.eat('}') {
			return nil
		}
		if !s.eat(',') {
			return errBadJSON
		}
	}
}

var errBadJSON = errors.New("malformed JSON")

// scanner walks valid JSON.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string, unescaping it only when it has escapes.
func (s *scanner) str() (string, error) {
	start := s.i
	if err := s.skipString(); err != nil {
		return "", err
	}
	quoted := s.b[start:s.i]
	if bytes.IndexByte(quoted, '\\') < 0 {
		return string(quoted[1 : len(quoted)-1]), nil
	}
	var v string
	if err := json.Unmarshal(quoted, &v); err != nil {
		return "", err
	}
	return v, nil
}

func (s *scanner) skipString() error {
	if !s.eat('"') {
		return errBadJSON
	}
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			s.i += 2
		case '"':
			s.i++
			return nil
		default:
			s.i++
		}
	}
	return errBadJSON
}

// value skips one value: a string, or everything up to the bracket that
// closes an object or array (strings inside skipped whole), or a literal.
func (s *scanner) value() error {
	if s.i >= len(s.b) {
		return errBadJSON
	}
	switch s.b[s.i] {
	case '"':
		return s.skipString()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if err := s.skipString(); err != nil {
					return err
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return nil
				}
			}
			s.i++
		}
		return errBadJSON
	default:
		for s.i < len(s.b) && !strings.ContainsRune(",}] \t\r\n", rune(s.b[s.i])) {
			s.i++
		}
		return nil
	}
}
