// Package eventlog parses a confidential-computing event log (the CCEL
// ACPI table's log area, or a TPM-style crypto-agile TCG event log),
// replays it, and renders it as trustee's uefi_event_logs claims.
//
// The format is the TCG PC Client Platform Firmware Profile's: a first
// event in the SHA-1 layout whose data is the "Spec ID Event03" listing the
// digest algorithms and sizes, then crypto-agile events (TCG_PCR_EVENT2).
// In a CCEL the "PCR index" is a CC measurement register index: 0 is MRTD,
// 1..4 are RTMR0..3 on TDX.
package eventlog

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash"
)

// TCG algorithm IDs.
const (
	AlgSHA1   uint16 = 0x0004
	AlgSHA256 uint16 = 0x000B
	AlgSHA384 uint16 = 0x000C
	AlgSHA512 uint16 = 0x000D
	AlgSM3    uint16 = 0x0012
)

// Event types used here (TCG PC Client PFP, table 9 and 10).
const (
	EvNoAction  uint32 = 0x3
	EvSeparator uint32 = 0x4
	EvEventTag  uint32 = 0x6
)

// MaxSize bounds the log Parse accepts. A CCEL log area is usually 64 KiB
// to 1 MiB.
const MaxSize = 8 << 20

// maxEvent bounds one event's data and its digest count; real events are
// a few KiB (a Secure Boot db variable), never megabytes.
const (
	maxEvent   = 1 << 20
	maxDigests = 16
)

// Digest is one digest of an event.
type Digest struct {
	Alg    uint16
	Digest []byte
}

// Event is one measured event.
type Event struct {
	// Index is the measurement register index as logged (CCEL: 0 MRTD,
	// 1..4 RTMR0..3; TPM: the PCR).
	Index   uint32
	Type    uint32
	Digests []Digest
	Data    []byte
}

// Log is a parsed event log.
type Log struct {
	// DigestSizes are the algorithms and digest sizes the Spec ID event
	// declares.
	DigestSizes map[uint16]int
	// Events excludes the Spec ID event.
	Events []Event
	// Hashes are the hash functions by algorithm ID used to replay and to
	// check events against their digests. Parse sets SHA-1 and the SHA-2
	// family; add others (SM3) before calling Replay or Claims.
	Hashes map[uint16]func() hash.Hash
}

type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = fmt.Errorf("event log: truncated %s at offset %d", what, r.off)
		return nil
	}
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s
}

func (r *reader) u32(what string) uint32 {
	if s := r.take(4, what); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if s := r.take(2, what); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}

var specIDSignature = []byte("Spec ID Event03\x00")

// Parse parses a crypto-agile event log. The log ends at the end of the
// data or where the next eight bytes are all 0x00 or all 0xFF (the unused
// part of a CCEL log area). The Log refers to b: do not change b while
// the Log is in use.
func Parse(b []byte) (*Log, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("event log: %d bytes is more than %d", len(b), MaxSize)
	}
	r := &reader{b: b}
	r.u32("first event PCR index")
	if typ := r.u32("first event type"); r.err == nil && typ != EvNoAction {
		return nil, fmt.Errorf("event log: first event has type %#x, not EV_NO_ACTION", typ)
	}
	r.take(20, "first event digest")
	spec := r.take(int(min(r.u32("first event size"), maxEvent)), "Spec ID event")
	if r.err != nil {
		return nil, r.err
	}
	l := &Log{DigestSizes: map[uint16]int{}, Hashes: map[uint16]func() hash.Hash{
		AlgSHA1: sha1.New, AlgSHA256: sha256.New, AlgSHA384: sha512.New384, AlgSHA512: sha512.New,
	}}
	if err := l.parseSpecID(spec); err != nil {
		return nil, err
	}
	for r.off < len(b) {
		if rest := b[r.off:]; len(rest) < 8 && (allBytes(rest, 0) || allBytes(rest, 0xff)) ||
			len(rest) >= 8 && (allBytes(rest[:8], 0) || allBytes(rest[:8], 0xff)) {
			break
		}
		e := Event{Index: r.u32("register index"), Type: r.u32("event type")}
		n := r.u32("digest count")
		if r.err == nil && n > maxDigests {
			return nil, fmt.Errorf("event log: event at offset %d has %d digests", r.off, n)
		}
		for i := uint32(0); i < n && r.err == nil; i++ {
			alg := r.u16("digest algorithm")
			size, ok := l.DigestSizes[alg]
			if r.err == nil && !ok {
				return nil, fmt.Errorf("event log: digest algorithm %#04x is not in the Spec ID event", alg)
			}
			e.Digests = append(e.Digests, Digest{Alg: alg, Digest: r.take(size, "digest")})
		}
		size := r.u32("event size")
		if r.err == nil && size > maxEvent {
			return nil, fmt.Errorf("event log: event at offset %d has %d bytes of data", r.off, size)
		}
		e.Data = r.take(int(size), "event data")
		if r.err != nil {
			return nil, r.err
		}
		l.Events = append(l.Events, e)
	}
	return l, nil
}

// parseSpecID reads TCG_EfiSpecIDEvent: signature, platform class, spec
// version, uintn size, then the algorithm list and vendor info.
func (l *Log) parseSpecID(b []byte) error {
	r := &reader{b: b}
	sig := r.take(16, "Spec ID signature")
	if r.err == nil && !bytes.Equal(sig, specIDSignature) {
		return fmt.Errorf("event log: first event is not a Spec ID Event03 (%q)", sig)
	}
	r.take(8, "Spec ID header")
	n := r.u32("algorithm count")
	if r.err == nil && (n == 0 || n > maxDigests) {
		return fmt.Errorf("event log: Spec ID event lists %d algorithms", n)
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		alg, size := r.u16("algorithm"), r.u16("digest size")
		if r.err == nil && (size == 0 || size > 64) {
			return fmt.Errorf("event log: algorithm %#04x has digest size %d", alg, size)
		}
		l.DigestSizes[alg] = int(size)
	}
	vendor := r.take(1, "vendor info size")
	if r.err == nil {
		r.take(int(vendor[0]), "vendor info")
	}
	if r.err == nil && r.off != len(b) {
		return fmt.Errorf("event log: %d bytes after the Spec ID event's vendor info", len(b)-r.off)
	}
	return r.err
}

func allBytes(b []byte, v byte) bool {
	for _, x := range b {
		if x != v {
			return false
		}
	}
	return true
}

// Replay extends every register of the log from zero with the events'
// digests of algorithm alg: R = H(R || digest). EV_NO_ACTION events are
// informational and not extended (TCG PC Client PFP).
func (l *Log) Replay(alg uint16) (map[uint32][]byte, error) {
	newHash := l.Hashes[alg]
	size, ok := l.DigestSizes[alg]
	if newHash == nil || !ok {
		return nil, fmt.Errorf("event log: cannot replay algorithm %#04x", alg)
	}
	h := newHash()
	out := map[uint32][]byte{}
	for _, e := range l.Events {
		if e.Type == EvNoAction {
			continue
		}
		for _, d := range e.Digests {
			if d.Alg != alg {
				continue
			}
			cur := out[e.Index]
			if cur == nil {
				cur = make([]byte, size)
			}
			h.Reset()
			h.Write(cur)
			h.Write(d.Digest)
			out[e.Index] = h.Sum(cur[:0])
		}
	}
	return out, nil
}

// RTMRs replays a TDX CCEL with SHA-384 and returns RTMR0..3 (CCEL
// indexes 1..4); a register with no event is 48 zero bytes.
func (l *Log) RTMRs() ([4][]byte, error) {
	var rtmr [4][]byte
	reg, err := l.Replay(AlgSHA384)
	if err != nil {
		return rtmr, err
	}
	for i := range rtmr {
		rtmr[i] = reg[uint32(i+1)]
		if rtmr[i] == nil {
			rtmr[i] = make([]byte, 48)
		}
	}
	return rtmr, nil
}
