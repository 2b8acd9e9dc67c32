package dcap

import (
	"crypto/ecdsa"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strconv"
	"time"
)

// TDXClaims returns trustee's claims of a TD quote (deps/verifier/src/tdx
// claims): quote.header.*, quote.body.* (hex), v5 quote.type/quote.size,
// td_attributes.*, report_data, init_data (MRCONFIGID, always reported),
// and platform_instance_id for platform CA PCK certificates. p may be nil.
func TDXClaims(q *Quote, p *PlatformInfo) map[string]any {
	td := q.TD
	h := &q.Header
	header := map[string]any{
		"version":      hx(h.RawVersion()),
		"att_key_type": hx(h.RawAttKeyType()),
		"tee_type":     hx(h.RawTEEType()),
		"reserved":     hx(h.Reserved()),
		"vendor_id":    hx(h.VendorID()),
		"user_data":    hx(h.UserData()),
	}
	body := map[string]any{
		"tcb_svn":         hx(td.TEETCBSVN()),
		"mr_seam":         hx(td.MRSEAM()),
		"mrsigner_seam":   hx(td.MRSignerSEAM()),
		"seam_attributes": hx(td.SEAMAttributes()),
		"td_attributes":   hx(td.TDAttributes()),
		"xfam":            hx(td.XFAM()),
		"mr_td":           hx(td.MRTD()),
		"mr_config_id":    hx(td.MRConfigID()),
		"mr_owner":        hx(td.MROwner()),
		"mr_owner_config": hx(td.MROwnerConfig()),
		"rtmr_0":          hx(td.RTMR(0)),
		"rtmr_1":          hx(td.RTMR(1)),
		"rtmr_2":          hx(td.RTMR(2)),
		"rtmr_3":          hx(td.RTMR(3)),
		"report_data":     hx(td.ReportData()),
	}
	if td.IsTD15() {
		body["tee_tcb_svn2"] = hx(td.TEETCBSVN2())
		body["mr_servicetd"] = hx(td.MRServiceTD())
	}
	quote := map[string]any{"header": header, "body": body}
	if h.Version == 5 {
		var t [2]byte
		var s [4]byte
		binary.LittleEndian.PutUint16(t[:], q.BodyType)
		binary.LittleEndian.PutUint32(s[:], uint32(len(td.Raw)))
		quote["type"] = hx(t[:])
		quote["size"] = hx(s[:])
	}
	attrs := binary.LittleEndian.Uint64(td.TDAttributes())
	claims := map[string]any{
		"quote": quote,
		"td_attributes": map[string]any{
			"debug":           attrs&(1<<0) != 0,
			"septve_disable":  attrs&(1<<28) != 0,
			"protection_keys": attrs&(1<<30) != 0,
			"key_locker":      attrs&(1<<31) != 0,
			"perfmon":         attrs&(1<<63) != 0,
		},
		"report_data": hx(td.ReportData()),
		"init_data":   hx(td.MRConfigID()),
	}
	addPlatformInstance(claims, p)
	return claims
}

// SGXClaims returns trustee's claims of an SGX quote (deps/verifier/src/sgx
// claims): header.*, body.* (hex; "attributes.flags" and
// "attributes.xfrm" are single keys), report_data, init_data (CONFIGID)
// and platform_instance_id.
func SGXClaims(q *Quote, p *PlatformInfo) map[string]any {
	h := &q.Header
	r := q.Enclave
	header := map[string]any{
		"version":        hx(h.RawVersion()),
		"att_key_type":   hx(h.RawAttKeyType()),
		"att_key_data_0": hx(h.RawTEEType()),
		"qe_svn":         hx(h.Reserved()[0:2]),
		"pce_svn":        hx(h.Reserved()[2:4]),
		"vendor_id":      hx(h.VendorID()),
		"user_data":      hx(h.UserData()),
	}
	body := map[string]any{
		"cpu_svn":          hx(r.CPUSVN()),
		"misc_select":      hx(r.MiscSelect()),
		"reserved1":        hx(r.Reserved1()),
		"isv_ext_prod_id":  hx(r.ISVExtProdID()),
		"attributes.flags": hx(r.Attributes()[0:8]),
		"attributes.xfrm":  hx(r.Attributes()[8:16]),
		"mr_enclave":       hx(r.MREnclave()),
		"reserved2":        hx(r.Reserved2()),
		"mr_signer":        hx(r.MRSigner()),
		"reserved3":        hx(r.Reserved3()),
		"config_id":        hx(r.ConfigID()),
		"isv_prod_id":      hx(r.RawISVProdID()),
		"isv_svn":          hx(r.RawISVSVN()),
		"config_svn":       hx(r.ConfigSVN()),
		"reserved4":        hx(r.Reserved4()),
		"isv_family_id":    hx(r.ISVFamilyID()),
		"report_data":      hx(r.ReportData()),
	}
	claims := map[string]any{
		"header":      header,
		"body":        body,
		"report_data": hx(r.ReportData()),
		"init_data":   hx(r.ConfigID()),
	}
	addPlatformInstance(claims, p)
	return claims
}

// addPlatformInstance adds platform_instance_id: trustee prints the PCK
// certificate's 16 bytes reversed (it reads them as a little-endian u128).
func addPlatformInstance(claims map[string]any, p *PlatformInfo) {
	if p == nil || p.PlatformInstance == nil {
		return
	}
	id := slices.Clone(p.PlatformInstance)
	slices.Reverse(id)
	claims["platform_instance_id"] = hx(id)
}

// SupplementalClaims are the claims trustee takes from Intel QVL's
// supplemental data: platform facts from the PCK certificate always, and
// the TCB verdict and collateral dates when collateral was evaluated.
func (r *Result) SupplementalClaims() map[string]any {
	p := r.Platform
	c := map[string]any{
		"platform_provider_id": hx(p.PPID),
		"sgx_type":             sgxTypeName(p.SGXType),
		"root_key_id":          rootKeyID(r.Chain),
	}
	if p.SGXType > 0 && p.SMTEnabled != nil {
		c["is_dynamic_platform"] = *p.DynamicPlatform
		c["is_cached_keys"] = *p.CachedKeys
		c["is_smt_enabled"] = *p.SMTEnabled
	}
	t := r.TCB
	if t == nil {
		return c
	}
	c["tcb_status"] = t.Status
	c["tcb_date"] = rfc3339(t.Date)
	ids := make([]any, 0, len(t.AdvisoryIDs))
	for _, id := range t.AdvisoryIDs {
		ids = append(ids, id)
	}
	c["advisory_ids"] = ids
	c["collateral_expiration_status"] = map[bool]string{false: "0", true: "1"}[t.CollateralExpired]
	c["earliest_issue_date"] = rfc3339(t.EarliestIssue)
	c["latest_issue_date"] = rfc3339(t.LatestIssue)
	c["earliest_expiration_date"] = rfc3339(t.EarliestExpiration)
	c["tcb_eval_num"] = t.EvaluationDataNumber
	if t.PCKCRLNumber != nil {
		c["pck_crl_num"] = *t.PCKCRLNumber
	}
	if t.RootCRLNumber != nil {
		c["root_ca_crl_num"] = *t.RootCRLNumber
	}
	return c
}

func sgxTypeName(t int) string {
	switch t {
	case SGXTypeStandard:
		return "Standard"
	case SGXTypeScalable:
		return "Scalable"
	case SGXTypeScalableWithIntegrity:
		return "Scalable with Integrity"
	}
	return "Unknown (" + strconv.Itoa(t) + ")"
}

// rootKeyID is QVL's root_key_id: SHA-384 of the root CA's public key as
// an uncompressed point.
func rootKeyID(ch *PCKChain) string {
	k, ok := ch.Root.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return ""
	}
	b, err := k.Bytes()
	if err != nil {
		return ""
	}
	sum := sha512.Sum384(b)
	return hx(sum[:])
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func hx(b []byte) string { return hex.EncodeToString(b) }
