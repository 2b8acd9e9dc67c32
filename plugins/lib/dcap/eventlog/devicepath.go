package eventlog

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
)

// devicePathNode renders one UEFI device path node the way trustee does;
// nodes it does not know render as Path(type,subtype,hex).
func devicePathNode(typ, sub byte, data []byte) string {
	if s, ok := knownNode(typ, sub, data); ok {
		return s
	}
	return fmt.Sprintf("Path(%d,%d,%s)", typ, sub, hex.EncodeToString(data))
}

func knownNode(typ, sub byte, d []byte) (string, bool) {
	switch {
	case typ == 1 && sub == 1: // hardware: PCI
		if len(d) < 2 {
			return "", false
		}
		return fmt.Sprintf("Pci(%d,%d)", d[0], d[1]), true
	case typ == 2 && sub == 1: // ACPI
		if len(d) < 8 {
			return "", false
		}
		hid := binary.LittleEndian.Uint32(d[0:4])
		uid := binary.LittleEndian.Uint32(d[4:8])
		v := hid & 0xFFFF
		return fmt.Sprintf("ACPI(%c%c%c%04X,%d)", byte(v>>10&0x1F)+'@', byte(v>>5&0x1F)+'@', byte(v&0x1F)+'@', hid>>16, uid), true
	case typ == 3:
		return messagingNode(sub, d)
	case typ == 4:
		return mediaNode(sub, d)
	case typ == 5 && sub == 1: // BIOS boot specification
		if len(d) < 4 {
			return "", false
		}
		names := map[uint16]string{1: "FLOPPY", 2: "HARD_DRIVE", 3: "CDROM", 4: "PCMCIA", 5: "USB", 6: "EMBEDDED_NETWORK", 0x80: "DEV", 0xFF: "UNKNOWN"}
		t := binary.LittleEndian.Uint16(d[0:2])
		name, ok := names[t]
		if !ok {
			name = fmt.Sprint(t)
		}
		desc := d[4:]
		if i := strings.IndexByte(string(desc), 0); i >= 0 {
			desc = desc[:i]
		}
		if !utf8.Valid(desc) {
			return "", false
		}
		return fmt.Sprintf("BBS(%s,%s,%d)", name, desc, binary.LittleEndian.Uint16(d[2:4])), true
	}
	return "", false
}

func messagingNode(sub byte, d []byte) (string, bool) {
	switch sub {
	case 0x15: // Fibre Channel Ex
		if len(d) < 16 {
			return "", false
		}
		return fmt.Sprintf("FibreEx(0x%x,0x%x)", d[0:8], d[8:16]), true
	case 0x05: // USB
		if len(d) < 2 {
			return "", false
		}
		return fmt.Sprintf("USB(%d,%d)", d[0], d[1]), true
	case 0x0B: // MAC address
		if len(d) != 33 {
			return "", false
		}
		mac := strings.ToUpper(strings.TrimRight(hex.EncodeToString(d[0:31]), "0"))
		return fmt.Sprintf("Mac(%s,0x%02x)", mac, d[32]), true
	case 0x0C: // IPv4
		if len(d) < 23 {
			return "", false
		}
		// trustee reads the addresses as little-endian numbers and prints
		// them most significant byte first
		ip := func(b []byte) string { return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0]) }
		proto := map[uint16]string{6: "TCP", 17: "UDP"}[binary.LittleEndian.Uint16(d[12:14])]
		kind := map[byte]string{0: "DHCP", 1: "Static"}[d[14]]
		gw := binary.LittleEndian.Uint32(d[15:19])
		mask := binary.LittleEndian.Uint32(d[19:23])
		gs := ""
		if gw != 0 || mask != 0 {
			gs = fmt.Sprintf(",%d,%d", gw, mask)
		}
		return fmt.Sprintf("IPv4(%s,%s,%s,%s%s)", ip(d[4:8]), proto, kind, ip(d[0:4]), gs), true
	}
	return "", false
}

func mediaNode(sub byte, d []byte) (string, bool) {
	switch sub {
	case 0x01: // hard drive
		if len(d) < 38 {
			return "", false
		}
		part := binary.LittleEndian.Uint32(d[0:4])
		start := binary.LittleEndian.Uint64(d[4:12])
		size := binary.LittleEndian.Uint64(d[12:20])
		var kind, sig string
		switch d[36] {
		case 1:
			kind, sig = "MBR", fmt.Sprintf("0x%08x", binary.LittleEndian.Uint32(d[20:24]))
		case 2:
			kind, sig = "GPT", guid(d[20:36])
		default:
			return "", false
		}
		extra := ""
		if part != 0 {
			extra = fmt.Sprintf(",0x%x,0x%x", start, size)
		}
		return fmt.Sprintf("HD(%d,%s,%s%s)", part, kind, sig, extra), true
	case 0x03: // vendor media
		if len(d) < 16 {
			return "", false
		}
		return fmt.Sprintf("VenMedia(%s,%s)", guid(d[0:16]), hex.EncodeToString(d[16:])), true
	case 0x04: // file path
		if len(d) == 0 || len(d)%2 != 0 {
			return "", false
		}
		return "File(" + utf16String(d[:len(d)-2]) + ")", true
	}
	return "", false
}

// guid formats a UEFI GUID (mixed endian) in upper case.
func guid(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", binary.LittleEndian.Uint32(b[0:4]),
		binary.LittleEndian.Uint16(b[4:6]), binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}
