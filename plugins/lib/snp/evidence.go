package snp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/gokbs/kbs/sdk"
)

// Limits on what the guest may send. A real evidence document is about 6
// KiB without certificates and 25 KiB with VCEK, ASK and ARK.
const (
	MaxEvidenceSize = 256 << 10
	maxCerts        = 16
	maxCertSize     = 16 << 10
)

// CertType names an entry of the evidence's cert_chain, as the sev crate's
// CertType enum serializes it.
type CertType string

const (
	CertEmpty CertType = "Empty"
	CertARK   CertType = "ARK"
	CertASK   CertType = "ASK" // also carries the ASVK of a VLEK chain
	CertVCEK  CertType = "VCEK"
	CertVLEK  CertType = "VLEK"
	CertCRL   CertType = "CRL"
	CertOther CertType = "OTHER" // GUID says what it is
)

// Cert is one certificate-table entry: DER bytes for the X.509 kinds.
type Cert struct {
	Type CertType
	GUID string // CertOther only
	Data []byte
}

// Evidence is what CoCo's SNP attester sends.
type Evidence struct {
	Report *Report
	// CertChain is nil when the host supplied no certificates (null).
	CertChain []Cert
}

// ParseEvidence parses the SNP evidence JSON exactly as the guest attester
// (guest-components, sev crate 6.x) serializes it:
//
//	{"attestation_report":{...},"cert_chain":[{"cert_type":"VCEK","data":[...]}]|null}
//
// Byte arrays are JSON arrays of integers with their exact ABI lengths.
// Field names are matched exactly; unknown fields are ignored, as serde
// does. The report is converted back to its ABI bytes, which is what the
// signature covers. Errors are sdk.BadEvidence, or sdk.Unsupported for a
// report version or processor that is not supported.
func ParseEvidence(data []byte) (*Evidence, error) {
	if len(data) > MaxEvidenceSize {
		return nil, sdk.BadEvidence("snp evidence: %d bytes, more than the %d allowed", len(data), MaxEvidenceSize)
	}
	if !json.Valid(data) {
		err := json.Unmarshal(data, new(json.RawMessage))
		return nil, sdk.BadEvidence("snp evidence: %v", err)
	}
	top, err := decodeObject(data, "evidence")
	if err != nil {
		return nil, err
	}
	rawReport, err := top.required("attestation_report")
	if err != nil {
		return nil, err
	}
	report, err := decodeReport(rawReport)
	if err != nil {
		return nil, err
	}
	ev := &Evidence{Report: report}
	if rawChain, ok := top.optional("cert_chain"); ok {
		if ev.CertChain, err = decodeChain(rawChain); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

func decodeReport(raw []byte) (*Report, error) {
	o, err := decodeObject(raw, "attestation_report")
	if err != nil {
		return nil, err
	}
	var r Report
	d := decoder{o: o}
	r.Version = number[uint32](&d, "version")
	r.GuestSVN = number[uint32](&d, "guest_svn")
	r.Policy = number[uint64](&d, "policy")
	d.bytes("family_id", r.FamilyID[:])
	d.bytes("image_id", r.ImageID[:])
	r.VMPL = number[uint32](&d, "vmpl")
	r.SigAlgo = number[uint32](&d, "sig_algo")
	r.CurrentTCB = d.tcb("current_tcb")
	r.PlatformInfo = number[uint64](&d, "plat_info")
	r.KeyInfo = number[uint32](&d, "key_info")
	d.bytes("report_data", r.ReportData[:])
	d.bytes("measurement", r.Measurement[:])
	d.bytes("host_data", r.HostData[:])
	d.bytes("id_key_digest", r.IDKeyDigest[:])
	d.bytes("author_key_digest", r.AuthorKeyDigest[:])
	d.bytes("report_id", r.ReportID[:])
	d.bytes("report_id_ma", r.ReportIDMA[:])
	r.ReportedTCB = d.tcb("reported_tcb")
	r.CPUIDFamily = optionalNumber[uint8](&d, "cpuid_fam_id")
	r.CPUIDModel = optionalNumber[uint8](&d, "cpuid_mod_id")
	r.CPUIDStepping = optionalNumber[uint8](&d, "cpuid_step")
	d.bytes("chip_id", r.ChipID[:])
	r.CommittedTCB = d.tcb("committed_tcb")
	r.Current = d.version("current")
	r.Committed = d.version("committed")
	r.LaunchTCB = d.tcb("launch_tcb")
	r.LaunchMitVector = optionalNumber[uint64](&d, "launch_mit_vector")
	r.CurrentMitVector = optionalNumber[uint64](&d, "current_mit_vector")
	if sig, ok := d.object("signature"); ok {
		sd := decoder{o: sig}
		sd.bytes("r", r.SignatureR[:])
		sd.bytes("s", r.SignatureS[:])
		d.note(sd.err)
	}
	if d.err != nil {
		return nil, d.err
	}
	raw, err = r.marshal()
	if err != nil {
		return nil, err
	}
	return ParseReport(raw)
}

func decodeChain(raw []byte) ([]Cert, error) {
	if !startsWith(raw, '[') {
		return nil, sdk.BadEvidence("snp evidence: cert_chain is not an array or null")
	}
	entries, err := elements(raw)
	if err != nil {
		return nil, sdk.BadEvidence("snp evidence: cert_chain: %v", err)
	}
	if len(entries) > maxCerts {
		return nil, sdk.BadEvidence("snp evidence: cert_chain has %d entries, more than %d", len(entries), maxCerts)
	}
	certs := make([]Cert, 0, len(entries))
	for i, e := range entries {
		o, err := decodeObject(e, fmt.Sprintf("cert_chain[%d]", i))
		if err != nil {
			return nil, err
		}
		var c Cert
		t, err := o.required("cert_type")
		if err != nil {
			return nil, err
		}
		if c.Type, c.GUID, err = decodeCertType(t); err != nil {
			return nil, sdk.BadEvidence("snp evidence: %s.cert_type: %v", o.path, err)
		}
		d, err := o.required("data")
		if err != nil {
			return nil, err
		}
		if c.Data, err = byteArray(d, nil); err != nil {
			return nil, sdk.BadEvidence("snp evidence: %s.data: %v", o.path, err)
		}
		if len(c.Data) > maxCertSize {
			return nil, sdk.BadEvidence("snp evidence: %s.data is %d bytes, more than %d", o.path, len(c.Data), maxCertSize)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// decodeCertType reads serde's externally tagged enum: a unit variant is a
// string, OTHER(uuid) is {"OTHER":"<uuid>"}.
func decodeCertType(raw []byte) (CertType, string, error) {
	if startsWith(raw, '"') {
		s, err := jsonString(raw)
		if err != nil {
			return "", "", err
		}
		switch t := CertType(s); t {
		case CertEmpty, CertARK, CertASK, CertVCEK, CertVLEK, CertCRL:
			return t, "", nil
		}
		return "", "", fmt.Errorf("unknown certificate type %q", s)
	}
	other, err := members(raw)
	if err != nil || len(other) != 1 || !startsWith(other[string(CertOther)], '"') {
		return "", "", fmt.Errorf("want a type name or {\"OTHER\":\"<uuid>\"}")
	}
	g, err := jsonString(other[string(CertOther)])
	if err != nil {
		return "", "", err
	}
	id, err := uuid.Parse(g)
	if err != nil {
		return "", "", fmt.Errorf("OTHER: %v", err)
	}
	return CertOther, id.String(), nil
}

// object is one JSON object, keys matched exactly (encoding/json alone
// would match them case-insensitively, which serde does not).
type object struct {
	path string
	m    map[string][]byte
}

func decodeObject(raw []byte, path string) (object, error) {
	if !startsWith(raw, '{') {
		return object{}, sdk.BadEvidence("snp evidence: %s is not an object", path)
	}
	m, err := members(raw)
	if err != nil {
		return object{}, sdk.BadEvidence("snp evidence: %s: %v", path, err)
	}
	return object{path: path, m: m}, nil
}

func (o object) required(name string) ([]byte, error) {
	v, ok := o.m[name]
	if !ok {
		return nil, sdk.BadEvidence("snp evidence: %s.%s is missing", o.path, name)
	}
	return v, nil
}

// optional returns a field that serde models as Option: absent and null
// both mean None.
func (o object) optional(name string) ([]byte, bool) {
	v, ok := o.m[name]
	if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return nil, false
	}
	return v, true
}

// decoder reads the fields of one object, keeping the first error.
type decoder struct {
	o   object
	err error
}

func (d *decoder) note(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) fail(name string, format string, args ...any) {
	d.note(sdk.BadEvidence("snp evidence: %s.%s: %s", d.o.path, name, fmt.Sprintf(format, args...)))
}

// number reads an unsigned integer field: plain digits in range, as serde
// takes them.
func number[T uint8 | uint32 | uint64](d *decoder, name string) T {
	var v T
	if d.err != nil {
		return v
	}
	raw, err := d.o.required(name)
	if err != nil {
		d.note(err)
		return v
	}
	n, ok := parseUint(raw, 8*sizeOf(v))
	if !ok {
		d.fail(name, "want an unsigned integer of %d bits, got %.40s", 8*sizeOf(v), raw)
	}
	return T(n)
}

func optionalNumber[T uint8 | uint32 | uint64](d *decoder, name string) T {
	var v T
	if d.err != nil {
		return v
	}
	if _, ok := d.o.optional(name); !ok {
		return v
	}
	return number[T](d, name)
}

func sizeOf[T uint8 | uint32 | uint64](v T) int {
	switch any(v).(type) {
	case uint8:
		return 1
	case uint32:
		return 4
	}
	return 8
}

// bytes reads a byte array of exactly len(dst) elements.
func (d *decoder) bytes(name string, dst []byte) {
	if d.err != nil {
		return
	}
	raw, err := d.o.required(name)
	if err != nil {
		d.note(err)
		return
	}
	b, err := byteArray(raw, dst[:0])
	if err != nil {
		d.fail(name, "%v", err)
		return
	}
	if len(b) != len(dst) {
		d.fail(name, "%d bytes, want %d", len(b), len(dst))
	}
}

// byteArray parses a JSON array of integers 0..255, appending to dst. It
// is what encoding/json would do for []byte, an order of magnitude faster;
// the input has already been checked to be valid JSON. Like serde for u8,
// it takes only plain integers: no fraction, exponent or sign.
func byteArray(raw []byte, dst []byte) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '[' || raw[len(raw)-1] != ']' {
		return nil, fmt.Errorf("want an array of bytes")
	}
	raw = bytes.TrimSpace(raw[1 : len(raw)-1])
	if len(raw) == 0 {
		return dst, nil
	}
	for {
		i, v := 0, 0
		for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
			v = v*10 + int(raw[i]-'0')
			i++
			if v > 255 {
				return nil, fmt.Errorf("array element is not a byte (0..255)")
			}
		}
		if i == 0 || (i > 1 && raw[0] == '0') {
			return nil, fmt.Errorf("array element is not a byte (0..255)")
		}
		dst = append(dst, byte(v))
		raw = bytes.TrimLeft(raw[i:], " \t\r\n")
		if len(raw) == 0 {
			return dst, nil
		}
		if raw[0] != ',' {
			return nil, fmt.Errorf("array element is not a byte (0..255)")
		}
		raw = bytes.TrimLeft(raw[1:], " \t\r\n")
	}
}

func (d *decoder) object(name string) (object, bool) {
	if d.err != nil {
		return object{}, false
	}
	raw, err := d.o.required(name)
	if err != nil {
		d.note(err)
		return object{}, false
	}
	o, err := decodeObject(raw, d.o.path+"."+name)
	if err != nil {
		d.note(err)
		return object{}, false
	}
	return o, true
}

func (d *decoder) tcb(name string) TCB {
	o, ok := d.object(name)
	if !ok {
		return TCB{}
	}
	td := decoder{o: o}
	t := TCB{
		FMC:        optionalNumber[uint8](&td, "fmc"),
		Bootloader: number[uint8](&td, "bootloader"),
		TEE:        number[uint8](&td, "tee"),
		SNP:        number[uint8](&td, "snp"),
		Microcode:  number[uint8](&td, "microcode"),
	}
	d.note(td.err)
	return t
}

func (d *decoder) version(name string) Version {
	o, ok := d.object(name)
	if !ok {
		return Version{}
	}
	vd := decoder{o: o}
	v := Version{
		Major: number[uint8](&vd, "major"),
		Minor: number[uint8](&vd, "minor"),
		Build: number[uint8](&vd, "build"),
	}
	d.note(vd.err)
	return v
}

func startsWith(raw []byte, c byte) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == c
}

// EncodeEvidence returns the evidence JSON that the guest attester would
// send for the raw report and certificate table: serde's field order and
// representation (byte arrays as integer arrays, None as null). A nil
// chain is encoded as null. Tests and the snptest package use it to turn
// raw reports into evidence.
func EncodeEvidence(raw []byte, chain []Cert) ([]byte, error) {
	r, err := ParseReport(raw)
	if err != nil {
		return nil, err
	}
	var w jsonWriter
	w.s(`{"attestation_report":{`)
	w.field("version", uint64(r.Version))
	w.field("guest_svn", uint64(r.GuestSVN))
	w.field("policy", r.Policy)
	w.bytesField("family_id", r.FamilyID[:])
	w.bytesField("image_id", r.ImageID[:])
	w.field("vmpl", uint64(r.VMPL))
	w.field("sig_algo", uint64(r.SigAlgo))
	w.tcbField("current_tcb", r.CurrentTCB, r.turinLayout)
	w.field("plat_info", r.PlatformInfo)
	w.field("key_info", uint64(r.KeyInfo))
	w.bytesField("report_data", r.ReportData[:])
	w.bytesField("measurement", r.Measurement[:])
	w.bytesField("host_data", r.HostData[:])
	w.bytesField("id_key_digest", r.IDKeyDigest[:])
	w.bytesField("author_key_digest", r.AuthorKeyDigest[:])
	w.bytesField("report_id", r.ReportID[:])
	w.bytesField("report_id_ma", r.ReportIDMA[:])
	w.tcbField("reported_tcb", r.ReportedTCB, r.turinLayout)
	v3 := r.Version >= 3
	w.optField("cpuid_fam_id", uint64(r.CPUIDFamily), v3)
	w.optField("cpuid_mod_id", uint64(r.CPUIDModel), v3)
	w.optField("cpuid_step", uint64(r.CPUIDStepping), v3)
	w.bytesField("chip_id", r.ChipID[:])
	w.tcbField("committed_tcb", r.CommittedTCB, r.turinLayout)
	w.versionField("current", r.Current)
	w.versionField("committed", r.Committed)
	w.tcbField("launch_tcb", r.LaunchTCB, r.turinLayout)
	v5 := r.Version >= 5
	w.optField("launch_mit_vector", r.LaunchMitVector, v5)
	w.optField("current_mit_vector", r.CurrentMitVector, v5)
	w.key("signature")
	w.s("{")
	w.bytesField("r", r.SignatureR[:])
	w.bytesField("s", r.SignatureS[:])
	w.s("}}")
	w.s(`,"cert_chain":`)
	if chain == nil {
		w.s("null}")
		return w.b, nil
	}
	w.s("[")
	for i, c := range chain {
		if i > 0 {
			w.s(",")
		}
		w.s(`{"cert_type":`)
		if c.Type == CertOther {
			w.s(`{"OTHER":` + strconv.Quote(c.GUID) + `}`)
		} else {
			w.s(strconv.Quote(string(c.Type)))
		}
		w.s(`,"data":`)
		w.array(c.Data)
		w.s("}")
	}
	w.s("]}")
	return w.b, nil
}

// jsonWriter writes compact JSON in a fixed field order.
type jsonWriter struct {
	b     []byte
	comma bool
}

func (w *jsonWriter) s(s string) {
	w.b = append(w.b, s...)
	w.comma = s[len(s)-1] != '{'
}

func (w *jsonWriter) key(name string) {
	if w.comma {
		w.b = append(w.b, ',')
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, name...)
	w.b = append(w.b, '"', ':')
}

func (w *jsonWriter) field(name string, v uint64) {
	w.key(name)
	w.b = strconv.AppendUint(w.b, v, 10)
	w.comma = true
}

func (w *jsonWriter) optField(name string, v uint64, present bool) {
	if !present {
		w.key(name)
		w.s("null")
		return
	}
	w.field(name, v)
}

func (w *jsonWriter) array(b []byte) {
	w.b = append(w.b, '[')
	for i, c := range b {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.b = strconv.AppendUint(w.b, uint64(c), 10)
	}
	w.b = append(w.b, ']')
	w.comma = true
}

func (w *jsonWriter) bytesField(name string, b []byte) {
	w.key(name)
	w.array(b)
}

func (w *jsonWriter) tcbField(name string, t TCB, turin bool) {
	w.key(name)
	w.s("{")
	w.optField("fmc", uint64(t.FMC), turin)
	w.field("bootloader", uint64(t.Bootloader))
	w.field("tee", uint64(t.TEE))
	w.field("snp", uint64(t.SNP))
	w.field("microcode", uint64(t.Microcode))
	w.s("}")
}

func (w *jsonWriter) versionField(name string, v Version) {
	w.key(name)
	w.s("{")
	w.field("major", uint64(v.Major))
	w.field("minor", uint64(v.Minor))
	w.field("build", uint64(v.Build))
	w.s("}")
}
