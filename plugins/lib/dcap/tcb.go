package dcap

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/gokbs/kbs/sdk"
)

// TCB statuses, as Intel's collateral and trustee's tcb_status claim name them.
const (
	StatusUpToDate                          = "UpToDate"
	StatusSWHardeningNeeded                 = "SWHardeningNeeded"
	StatusConfigurationNeeded               = "ConfigurationNeeded"
	StatusConfigurationAndSWHardeningNeeded = "ConfigurationAndSWHardeningNeeded"
	StatusOutOfDate                         = "OutOfDate"
	StatusOutOfDateConfigurationNeeded      = "OutOfDateConfigurationNeeded"
	StatusRevoked                           = "Revoked"
)

var knownStatus = map[string]bool{
	StatusUpToDate: true, StatusSWHardeningNeeded: true, StatusConfigurationNeeded: true,
	StatusConfigurationAndSWHardeningNeeded: true, StatusOutOfDate: true,
	StatusOutOfDateConfigurationNeeded: true, StatusRevoked: true,
}

// TCBMatch is the outcome of matching a platform against collateral.
type TCBMatch struct {
	// Status is the converged status of the platform level, the TDX module
	// level and the QE level (Intel QVL's convergence rules).
	Status string
	// PlatformStatus, ModuleStatus ("" unless a TDX module identity
	// applies) and QEStatus are the statuses before convergence.
	PlatformStatus, ModuleStatus, QEStatus string
	// Date is the earlier of the platform level's and the QE level's
	// tcbDate (QVL's tcb_level_date_tag).
	Date time.Time
	// AdvisoryIDs is the union of the advisories of the matched levels.
	AdvisoryIDs []string
}

// worsen folds the status of the TDX module or QE into the platform status,
// as Intel's QVL converges them: an out-of-date component makes an
// up-to-date platform out of date, and a revoked one revokes it.
func worsen(platform, other string) string {
	switch other {
	case StatusOutOfDate, StatusOutOfDateConfigurationNeeded:
		switch platform {
		case StatusUpToDate, StatusSWHardeningNeeded:
			return StatusOutOfDate
		case StatusConfigurationNeeded, StatusConfigurationAndSWHardeningNeeded:
			return StatusOutOfDateConfigurationNeeded
		}
	case StatusRevoked:
		return StatusRevoked
	}
	return platform
}

// MatchTCB finds the TCB levels of q's platform in the collateral and
// converges their statuses. It does not check signatures or dates: callers
// pass collateral they have verified (or, in tests, collateral whose
// signing certificate they do not have). A platform or QE that no level
// covers is an error (QVL: TCB not supported).
func MatchTCB(q *Quote, p *PlatformInfo, ti *TCBInfo, qe *EnclaveIdentity) (*TCBMatch, error) {
	if !strings.EqualFold(hexUpper(p.FMSPC), ti.FMSPC) {
		return nil, sdk.BadEvidence("TCB: PCK certificate FMSPC %X is not the TCB info's %s", p.FMSPC, ti.FMSPC)
	}
	if !strings.EqualFold(hexUpper(p.PCEID), ti.PCEID) {
		return nil, sdk.BadEvidence("TCB: PCK certificate PCE-ID %X is not the TCB info's %s", p.PCEID, ti.PCEID)
	}
	qeLevel, err := matchQE(q, qe)
	if err != nil {
		return nil, err
	}
	m := &TCBMatch{QEStatus: qeLevel.TCBStatus}

	// The first level (Intel orders them from the newest) whose SGX
	// components and PCESVN the PCK certificate meets is the SGX level;
	// for TDX the first of those whose TDX components the TD report also
	// meets is the TDX level.
	var sgxLevel, tdxLevel *TCBLevel
	for i := range ti.TCBLevels {
		l := &ti.TCBLevels[i]
		if !svnsAtLeast(p.TCBComponents[:], l.TCB.SGXComponents, 0) || int(p.PCESVN) < l.TCB.PCESVN {
			continue
		}
		if sgxLevel == nil {
			sgxLevel = l
		}
		if !q.IsTDX() {
			break
		}
		tee := q.TD.TEETCBSVN()
		// With a TDX module of major version > 0, the first two SVNs are
		// the module's and are matched against its own identity below.
		start := 0
		if tee[1] > 0 {
			start = 2
		}
		if svnsAtLeast(tee, l.TCB.TDXComponents, start) {
			tdxLevel = l
			break
		}
	}
	if sgxLevel == nil {
		return nil, sdk.BadEvidence("TCB: no TCB level of FMSPC %s covers the PCK certificate's TCB (TCB not supported)", ti.FMSPC)
	}
	level := sgxLevel
	if q.IsTDX() {
		if tdxLevel == nil {
			return nil, sdk.BadEvidence("TCB: no TCB level of FMSPC %s covers the TD's TEE TCB SVN %x (TCB not supported)", ti.FMSPC, q.TD.TEETCBSVN())
		}
		level = tdxLevel
	}
	if !knownStatus[level.TCBStatus] {
		return nil, sdk.BadEvidence("TCB: unrecognised TCB status %q", level.TCBStatus)
	}
	m.PlatformStatus = level.TCBStatus
	m.Status = level.TCBStatus
	m.AdvisoryIDs = appendUnique(nil, level.AdvisoryIDs...)
	m.AdvisoryIDs = appendUnique(m.AdvisoryIDs, qeLevel.AdvisoryIDs...)
	// QVL's tcb_level_date_tag: the older of the platform's and the QE's
	// level dates.
	m.Date = level.TCBDate
	for _, d := range []time.Time{sgxLevel.TCBDate, qeLevel.TCBDate} {
		if d.Before(m.Date) {
			m.Date = d
		}
	}

	if q.IsTDX() {
		if err := matchModule(q, ti, m); err != nil {
			return nil, err
		}
	}
	m.Status = worsen(m.Status, m.QEStatus)
	if m.Status == StatusRevoked {
		return m, sdk.BadEvidence("TCB: the platform's TCB is revoked")
	}
	return m, nil
}

// matchModule checks the TDX module (SEAM) against its expected identity
// and folds the module's TCB status in.
func matchModule(q *Quote, ti *TCBInfo, m *TCBMatch) error {
	tee := q.TD.TEETCBSVN()
	want := ti.TDXModule
	if tee[1] > 0 {
		id := fmt.Sprintf("TDX_%02X", tee[1])
		var ident *TDXModuleIdentity
		for i := range ti.TDXModuleIdentities {
			if strings.EqualFold(ti.TDXModuleIdentities[i].ID, id) {
				ident = &ti.TDXModuleIdentities[i]
				break
			}
		}
		if ident == nil {
			return sdk.BadEvidence("TCB: TCB info has no TDX module identity %s", id)
		}
		var lvl *TCBLevel
		for i := range ident.TCBLevels {
			if int(tee[0]) >= ident.TCBLevels[i].TCB.ISVSVN {
				lvl = &ident.TCBLevels[i]
				break
			}
		}
		if lvl == nil {
			return sdk.BadEvidence("TCB: no TCB level of TDX module %s covers ISVSVN %d (TCB not supported)", id, tee[0])
		}
		if !knownStatus[lvl.TCBStatus] {
			return sdk.BadEvidence("TCB: unrecognised TDX module TCB status %q", lvl.TCBStatus)
		}
		m.ModuleStatus = lvl.TCBStatus
		m.Status = worsen(m.Status, lvl.TCBStatus)
		m.AdvisoryIDs = appendUnique(m.AdvisoryIDs, lvl.AdvisoryIDs...)
		want = &ident.TDXModule
	}
	if want == nil {
		return sdk.BadEvidence("TCB: TCB info has no TDX module identity")
	}
	if !bytes.Equal(want.MRSigner, q.TD.MRSignerSEAM()) {
		return sdk.BadEvidence("TCB: MRSIGNERSEAM %x is not the TDX module signer %x", q.TD.MRSignerSEAM(), []byte(want.MRSigner))
	}
	if len(want.AttributesMask) != 8 || len(want.Attributes) != 8 ||
		!bytes.Equal(and(q.TD.SEAMAttributes(), want.AttributesMask), want.Attributes) {
		return sdk.BadEvidence("TCB: SEAMATTRIBUTES %x do not match the TDX module's", q.TD.SEAMAttributes())
	}
	return nil
}

// matchQE checks the QE report against Intel's QE identity and returns the
// QE's TCB level.
func matchQE(q *Quote, qe *EnclaveIdentity) (*TCBLevel, error) {
	r := &q.QEReport
	if !bytes.Equal(r.MRSigner(), qe.MRSigner) {
		return nil, sdk.BadEvidence("TCB: QE MRSIGNER %x is not Intel's %x", r.MRSigner(), []byte(qe.MRSigner))
	}
	if int(r.ISVProdID()) != qe.ISVProdID {
		return nil, sdk.BadEvidence("TCB: QE ISVPRODID %d, want %d", r.ISVProdID(), qe.ISVProdID)
	}
	mask := binary.LittleEndian.Uint32(qe.MiscSelectMask)
	if r.MiscSelectU32()&mask != binary.LittleEndian.Uint32(qe.MiscSelect) {
		return nil, sdk.BadEvidence("TCB: QE MISCSELECT %x does not match the QE identity", r.MiscSelect())
	}
	if !bytes.Equal(and(r.Attributes(), qe.AttributesMask), qe.Attributes) {
		return nil, sdk.BadEvidence("TCB: QE ATTRIBUTES %x do not match the QE identity", r.Attributes())
	}
	for i := range qe.TCBLevels {
		l := &qe.TCBLevels[i]
		if l.TCB.ISVSVN <= int(r.ISVSVN()) {
			if !knownStatus[l.TCBStatus] {
				return nil, sdk.BadEvidence("TCB: unrecognised QE TCB status %q", l.TCBStatus)
			}
			return l, nil
		}
	}
	return nil, sdk.BadEvidence("TCB: no QE identity TCB level covers QE ISVSVN %d (TCB not supported)", r.ISVSVN())
}

func svnsAtLeast(have []byte, want []TCBComponent, start int) bool {
	if len(have) != len(want) {
		return false
	}
	for i := start; i < len(have); i++ {
		if int(have[i]) < want[i].SVN {
			return false
		}
	}
	return true
}

func and(a, mask []byte) []byte {
	if len(a) != len(mask) {
		return nil
	}
	out := make([]byte, len(a))
	for i := range a {
		out[i] = a[i] & mask[i]
	}
	return out
}

func appendUnique(dst []string, s ...string) []string {
outer:
	for _, x := range s {
		for _, y := range dst {
			if x == y {
				continue outer
			}
		}
		dst = append(dst, x)
	}
	return dst
}

func hexUpper(b []byte) string { return fmt.Sprintf("%X", b) }
