package eventlog

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// AlgName names a TCG algorithm as trustee's claims do.
func AlgName(alg uint16) string {
	switch alg {
	case 0x0001:
		return "RSA"
	case 0x0003:
		return "TDES"
	case AlgSHA1:
		return "SHA-1"
	case AlgSHA256:
		return "SHA-256"
	case AlgSHA384:
		return "SHA-384"
	case AlgSHA512:
		return "SHA-512"
	case AlgSM3:
		return "SM3"
	}
	return fmt.Sprintf("0x%04X", alg)
}

var typeNames = map[uint32]string{
	0x0: "EV_PREBOOT_CERT", 0x1: "EV_POST_CODE", 0x2: "EV_UNUSED", 0x3: "EV_NO_ACTION",
	0x4: "EV_SEPARATOR", 0x5: "EV_ACTION", 0x6: "EV_EVENT_TAG", 0x7: "EV_S_CRTM_CONTENTS",
	0x8: "EV_S_CRTM_VERSION", 0x9: "EV_CPU_MICROCODE", 0xA: "EV_PLATFORM_CONFIG_FLAGS",
	0xB: "EV_TABLE_OF_DEVICES", 0xC: "EV_COMPACT_HASH", 0xD: "EV_IPL", 0xE: "EV_IPL_PARTITION_DATA",
	0xF: "EV_NONHOST_CODE", 0x10: "EV_NONHOST_CONFIG", 0x11: "EV_NONHOST_INFO",
	0x12:       "EV_OMIT_BOOT_DEVICE_EVENTS",
	0x80000000: "EV_EFI_EVENT_BASE", 0x80000001: "EV_EFI_VARIABLE_DRIVER_CONFIG",
	0x80000002: "EV_EFI_VARIABLE_BOOT", 0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION",
	0x80000004: "EV_EFI_BOOT_SERVICES_DRIVER", 0x80000005: "EV_EFI_RUNTIME_SERVICES_DRIVER",
	0x80000006: "EV_EFI_GPT_EVENT", 0x80000007: "EV_EFI_ACTION",
	0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB", 0x80000009: "EV_EFI_HANDOFF_TABLES",
	0x8000000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2", 0x8000000B: "EV_EFI_HANDOFF_TABLES2",
	0x8000000C: "EV_EFI_VARIABLE_BOOT2", 0x80000010: "EV_EFI_HCRTM_EVENT",
	0x800000E0: "EV_EFI_VARIABLE_AUTHORITY", 0x800000E1: "EV_EFI_SPDM_FIRMWARE_BLOB",
	0x800000E2: "EV_EFI_SPDM_FIRMWARE_CONFIG",
}

// TypeName names an event type as trustee's claims do.
func TypeName(t uint32) string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("0x%08X", t)
}

// Claims renders the log as trustee's uefi_event_logs claim: one object
// per event with details, digest_matches_event, digests, event (std
// base64), index and type_name. The details follow trustee's parsers for
// each event type; where trustee would reject the whole log because one
// event's data does not parse, the event gets empty details instead.
func (l *Log) Claims() []any {
	out := make([]any, 0, len(l.Events))
	for _, e := range l.Events {
		digests := make([]any, 0, len(e.Digests))
		for _, d := range e.Digests {
			digests = append(digests, map[string]any{"alg": AlgName(d.Alg), "digest": hex.EncodeToString(d.Digest)})
		}
		out = append(out, map[string]any{
			"details":              details(e),
			"digest_matches_event": l.matches(e),
			"digests":              digests,
			"event":                base64.StdEncoding.EncodeToString(e.Data),
			"index":                e.Index,
			"type_name":            TypeName(e.Type),
		})
	}
	return out
}

// matches says whether every digest of e is the hash of its data.
func (l *Log) matches(e Event) bool {
	for _, d := range e.Digests {
		newHash := l.Hashes[d.Alg]
		if newHash == nil {
			return false
		}
		h := newHash()
		h.Write(e.Data)
		if subtle.ConstantTimeCompare(h.Sum(nil), d.Digest) != 1 {
			return false
		}
	}
	return true
}

func details(e Event) map[string]any {
	d, err := parseDetails(e.Type, e.Data)
	if err != nil || d == nil {
		return map[string]any{}
	}
	return d
}

func parseDetails(typ uint32, b []byte) (map[string]any, error) {
	switch typ {
	case 0x1, 0x5, 0xC, 0x12, 0x80000007: // post code, action, compact hash, omit boot device, EFI action
		if !utf8.Valid(b) {
			return nil, fmt.Errorf("not UTF-8")
		}
		return str(string(b)), nil
	case EvEventTag:
		return eventTag(b)
	case 0xA: // platform config flags
		s := ""
		if utf8.Valid(b) {
			s = strings.ReplaceAll(string(b), "\x10", " ")
		}
		return str(strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return -1
			}
			return r
		}, s)), nil
	case 0xD: // IPL
		return ipl(b)
	case 0x80000001, 0x80000002, 0x8000000C, 0x800000E0: // EFI variables
		return efiVariable(b)
	case 0x80000003: // boot services application
		return bootServicesApp(b)
	case 0x8000000A, 0x8000000B: // firmware blob 2, handoff tables 2
		if len(b) == 0 || int(b[0]) < 1 || len(b) < int(b[0]) {
			return nil, fmt.Errorf("short description")
		}
		desc := b[1:b[0]]
		if !utf8.Valid(desc) {
			return nil, fmt.Errorf("not UTF-8")
		}
		return str(string(desc)), nil
	}
	return nil, nil
}

func str(s string) map[string]any { return map[string]any{"string": s} }

// aaelTag is the event ID of a CoCo attestation-agent event log entry
// ("LEAA" little-endian).
const aaelTag = 0x4141454c

// eventTag parses TCG_PCClientTaggedEvent; an AAEL entry ("domain
// operation content") also gets its parts as data.
func eventTag(b []byte) (map[string]any, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("short tagged event")
	}
	id := binary.LittleEndian.Uint32(b[0:4])
	n := binary.LittleEndian.Uint32(b[4:8])
	if uint64(len(b)-8) < uint64(n) {
		return nil, fmt.Errorf("short tagged event data")
	}
	data := b[8 : 8+n]
	d := str(strings.ReplaceAll(strings.ToValidUTF8(string(data), "\uFFFD"), "\x00", ""))
	if id != aaelTag {
		return d, nil
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("AAEL entry is not UTF-8")
	}
	domain, rest, ok1 := strings.Cut(string(data), " ")
	operation, content, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("AAEL entry is not 'domain operation content'")
	}
	// Content that is one JSON value is kept as JSON (numbers exactly).
	var c any = content
	if json.Valid([]byte(content)) {
		dec := json.NewDecoder(strings.NewReader(content))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) == nil {
			c = v
		}
	}
	d["data"] = map[string]any{"domain": domain, "operation": operation, "content": c}
	d["unicode_name"] = "AAEL"
	return d, nil
}

// gceIPLPrefix marks the UTF-16 IPL events of GCE's firmware.
var gceIPLPrefix = []byte{0x2e, 0x00}

func ipl(b []byte) (map[string]any, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("short IPL event")
	}
	if bytes.HasPrefix(b, gceIPLPrefix) {
		// The prefix, then UTF-16 up to a two-byte terminator.
		if n := len(b) - 2; n == 0 || n%2 != 0 {
			return nil, fmt.Errorf("IPL event is not UTF-16")
		}
		return str(utf16String(b[2 : len(b)-2])), nil
	}
	s := b
	if i := bytes.IndexByte(b, 0); i >= 0 {
		s = b[:i]
	}
	if utf8.Valid(s) {
		return str(string(s)), nil
	}
	return str(hex.EncodeToString(b)), nil
}

// efiVariable parses UEFI_VARIABLE_DATA.
func efiVariable(b []byte) (map[string]any, error) {
	if len(b) < 32 {
		return nil, fmt.Errorf("short variable event")
	}
	guid := b[0:16]
	nameLen := binary.LittleEndian.Uint64(b[16:24])
	dataLen := binary.LittleEndian.Uint64(b[24:32])
	rest := b[32:]
	if nameLen > uint64(len(rest))/2 {
		return nil, fmt.Errorf("variable name out of bounds")
	}
	nameBytes := rest[:2*nameLen]
	rest = rest[2*nameLen:]
	u := make([]uint16, nameLen)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(nameBytes[2*i:])
	}
	name, ok := strictUTF16(u)
	if !ok {
		return nil, fmt.Errorf("variable name is not UTF-16")
	}
	if dataLen > uint64(len(rest)) {
		return nil, fmt.Errorf("variable data out of bounds")
	}
	return map[string]any{
		"unicode_name":         name,
		"unicode_name_length":  nameLen,
		"variable_data":        base64.StdEncoding.EncodeToString(rest[:dataLen]),
		"variable_data_length": dataLen,
		"variable_name":        fmt.Sprintf("%x-%x-%x-%x-%x", guid[0:4], guid[4:6], guid[6:8], guid[8:10], guid[10:16]),
	}, nil
}

// bootServicesApp parses UEFI_IMAGE_LOAD_EVENT and renders its device path.
func bootServicesApp(b []byte) (map[string]any, error) {
	if len(b) < 32 {
		return nil, fmt.Errorf("short image load event")
	}
	n := binary.LittleEndian.Uint64(b[24:32])
	if n == 0 {
		return nil, nil
	}
	// trustee drops the 4-byte end-of-path node
	if n < 8 || n-4 > uint64(len(b)-32) {
		return nil, fmt.Errorf("device path out of bounds")
	}
	p := b[32 : 32+n-4]
	var paths []any
	for len(p) > 0 {
		if len(p) < 4 {
			return nil, fmt.Errorf("short device path node")
		}
		l := int(binary.LittleEndian.Uint16(p[2:4]))
		if l < 4 || l > len(p) {
			return nil, fmt.Errorf("device path node length %d", l)
		}
		paths = append(paths, devicePathNode(p[0], p[1], p[4:l]))
		p = p[l:]
	}
	return map[string]any{"device_paths": paths}, nil
}

func utf16String(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// strictUTF16 decodes UTF-16, failing on unpaired surrogates.
func strictUTF16(u []uint16) (string, bool) {
	for i := 0; i < len(u); i++ {
		switch {
		case utf16.IsSurrogate(rune(u[i])):
			if u[i] >= 0xDC00 || i+1 >= len(u) || u[i+1] < 0xDC00 || u[i+1] > 0xDFFF {
				return "", false
			}
			i++
		}
	}
	return string(utf16.Decode(u)), true
}
