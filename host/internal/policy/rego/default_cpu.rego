# Default attestation policy for the "cpu" TEE class.
#
# Each trust claim starts at a value that means "not recognised", so that
# evidence is contraindicated until it matches reference values registered
# with POST /kbs/v0/reference-value. Reference value names are trustee's
# where trustee has one, so values registered for trustee keep working.
#
# AR4SI values used (draft-ietf-rats-ar4si):
#   executables    3 only approved executables loaded; 33 unrecognised ones
#   hardware       2 genuine hardware and firmware;   97 not recognised
#   configuration  2 approved configuration; 3 no known vulnerable setting;
#                  36 security-relevant configuration unavailable
#   0              no claim made
package policy

default executables := 33

default hardware := 97

default configuration := 36

trust_claims := {
	"instance-identity": 0,
	"configuration": configuration,
	"executables": executables,
	"file-system": 0,
	"hardware": hardware,
	"runtime-opaque": 0,
	"storage-opaque": 0,
	"sourced-data": 0,
}

#### Reference value helpers

# rv(name) lists the accepted values of a reference value: an array as it
# is, a scalar as a one-element list. Undefined when not registered.
rv(name) := v if {
	v := query_reference_value(name)
	is_array(v)
} else := [v] if {
	v := query_reference_value(name)
	v != null
	not is_object(v)
}

# accepted(name, x): x is one of the values of reference value name. The
# exact match is tried first; the tolerant one only when it fails.
accepted(name, x) if {
	x in rv(name)
} else := true if {
	some v in rv(name)
	same(v, x)
}

# unpinned_or_accepted(name, x): an optional pin, checked only once a
# reference value of that name is registered.
unpinned_or_accepted(name, _) if not rv(name)

unpinned_or_accepted(name, x) if accepted(name, x)

# Digests are written in either case and numbers sometimes as strings.
same(a, b) if a == b

same(a, b) if {
	is_string(a)
	is_string(b)
	lower(a) == lower(b)
}

same(a, b) if {
	is_number(a)
	is_string(b)
	a == to_number(b)
}

same(a, b) if {
	is_string(a)
	is_number(b)
	to_number(a) == b
}

# off(x): a flag that is false, as a boolean or as a string.
off(x) if x == false

off(x) if x == "false"

#### sample (test TEE: its verifier checks nothing, see the resource policy)

executables := 3 if accepted("launch_digest", input.sample.launch_digest)

hardware := 2 if {
	accepted("svn", input.sample.svn)
	unpinned_or_accepted("major_version", input.sample.platform_version.major)
	sample_minor_version_ok
}

sample_minor_version_ok if not rv("minimum_minor_version")

sample_minor_version_ok if {
	some m in rv("minimum_minor_version")
	to_number(input.sample.platform_version.minor) >= to_number(m)
}

configuration := 2 if input.sample.debug == false

#### snp (AMD SEV-SNP)

executables := 3 if accepted("snp_launch_measurement", input.snp.measurement)

hardware := 2 if {
	accepted("snp_bootloader", input.snp.reported_tcb_bootloader)
	accepted("snp_microcode", input.snp.reported_tcb_microcode)
	accepted("snp_snp_svn", input.snp.reported_tcb_snp)
	accepted("snp_tee_svn", input.snp.reported_tcb_tee)
}

snp_guest_locked if {
	input.snp.policy_debug_allowed == false
	input.snp.policy_migrate_ma == false
}

snp_config_pinned if {
	accepted("snp_guest_abi_major", input.snp.policy_abi_major)
	accepted("snp_guest_abi_minor", input.snp.policy_abi_minor)
	accepted("snp_smt_allowed", input.snp.policy_smt_allowed)
	accepted("snp_single_socket", input.snp.policy_single_socket)
	accepted("snp_smt_enabled", input.snp.platform_smt_enabled)
	accepted("snp_tsme_enabled", input.snp.platform_tsme_enabled)
}

configuration := 2 if {
	snp_guest_locked
	snp_config_pinned
}

configuration := 3 if {
	snp_guest_locked
	not snp_config_pinned
}

#### tdx (Intel TDX)

executables := 3 if {
	accepted("rtmr_1", input.tdx.quote.body.rtmr_1)
	accepted("rtmr_2", input.tdx.quote.body.rtmr_2)
	unpinned_or_accepted("rtmr_3", input.tdx.quote.body.rtmr_3)
}

hardware := 2 if {
	input.tdx.quote.header.tee_type == "81000000"
	accepted("mr_td", input.tdx.quote.body.mr_td)
	unpinned_or_accepted("mr_seam", input.tdx.quote.body.mr_seam)
	input.tdx.tcb_status == "UpToDate"
	not collateral_expired(input.tdx)
}

configuration := 2 if {
	input.tdx.td_attributes.debug == false
	unpinned_or_accepted("xfam", input.tdx.quote.body.xfam)
}

# DCAP reports "0" while the collateral is valid.
collateral_expired(claims) if {
	s := claims.collateral_expiration_status
	s != "0"
	s != 0
}

#### az-snp-vtpm (SEV-SNP behind Azure's paravisor and vTPM)

# PCRs are nested ({"tpm": {"pcr11": ...}}) or flattened ("tpm.pcr11").
pcr(claims, n) := claims.tpm[n]

pcr(claims, n) := claims[concat("", ["tpm.", n])] if not claims.tpm[n]

executables := 3 if {
	accepted("measurement", input["az-snp-vtpm"].measurement)
	accepted("snp_pcr11", pcr(input["az-snp-vtpm"], "pcr11"))
}

hardware := 2 if {
	accepted("tcb_bootloader", input["az-snp-vtpm"].reported_tcb_bootloader)
	accepted("tcb_microcode", input["az-snp-vtpm"].reported_tcb_microcode)
	accepted("tcb_snp", input["az-snp-vtpm"].reported_tcb_snp)
	accepted("tcb_tee", input["az-snp-vtpm"].reported_tcb_tee)
}

configuration := 2 if {
	off(input["az-snp-vtpm"].policy_debug_allowed)
	off(input["az-snp-vtpm"].policy_migrate_ma)
	unpinned_or_accepted("smt_allowed", input["az-snp-vtpm"].policy_smt_allowed)
	unpinned_or_accepted("single_socket", input["az-snp-vtpm"].policy_single_socket)
}

#### az-tdx-vtpm (TDX behind Azure's paravisor and vTPM)

executables := 3 if accepted("tdx_pcr11", pcr(input["az-tdx-vtpm"], "pcr11"))

hardware := 2 if {
	input["az-tdx-vtpm"].quote.header.tee_type == "81000000"
	accepted("mr_td", input["az-tdx-vtpm"].quote.body.mr_td)
	input["az-tdx-vtpm"].tcb_status == "UpToDate"
	not collateral_expired(input["az-tdx-vtpm"])
}

configuration := 2 if {
	input["az-tdx-vtpm"].td_attributes.debug == false
	unpinned_or_accepted("xfam", input["az-tdx-vtpm"].quote.body.xfam)
}

#### sgx (Intel SGX)

executables := 3 if {
	accepted("mr_enclave", input.sgx.body.mr_enclave)
	accepted("mr_signer", input.sgx.body.mr_signer)
}

hardware := 2 if {
	input.sgx.tcb_status == "UpToDate"
	not collateral_expired(input.sgx)
}

# ATTRIBUTES.DEBUG is bit 1 of the first byte: the second hex digit.
sgx_debug if substring(lower(input.sgx.body.attributes), 1, 1) in {"2", "3", "6", "7", "a", "b", "e", "f"}

configuration := 2 if {
	is_string(input.sgx.body.attributes)
	not sgx_debug
	unpinned_or_accepted("isv_prod_id", input.sgx.body.isv_prod_id)
}

#### cca (Arm CCA)

executables := 3 if accepted("cca_realm_initial_measurement", input.cca.realm["cca-realm-initial-measurement"])

hardware := 2 if {
	accepted("cca_platform_implementation_id", input.cca.platform["cca-platform-implementation-id"])
	cca_platform_secured
}

# PSA lifecycle "secured" is 0x3000..0x30ff.
cca_platform_secured if {
	lc := input.cca.platform["cca-platform-lifecycle"]
	lc >= 12288
	lc <= 12543
}

configuration := 2 if accepted("cca_realm_personalization_value", input.cca.realm["cca-realm-personalization-value"])

#### csv (Hygon CSV)

executables := 3 if accepted("csv_measurement", input.csv.measure)

hardware := 2 if {
	input.csv.policy
	unpinned_or_accepted("csv_api_major", input.csv.policy.api_major)
	unpinned_or_accepted("csv_build", input.csv.build)
}

configuration := 2 if input.csv.policy.nodbg in {true, 1}

#### tpm (a TPM alone: trust rests on a registered attestation key)

hardware := 2 if accepted("trusted_aks", input.tpm.ak_public)

executables := 3 if {
	accepted("trusted_aks", input.tpm.ak_public)
	accepted("tpm_pcr11", input.tpm.pcr11)
}

configuration := 0 if accepted("trusted_aks", input.tpm.ak_public)

#### se (IBM Secure Execution: the verifier checks measurements itself)

executables := 3 if input.se

hardware := 2 if input.se

configuration := 2 if input.se

#### Extensions

# ear.trustee.identifiers (EAR key -18) names the workload that init-data's
# Kata agent policy allows: container images and UIDs.
extensions := [{
	"name": "ear.trustee.identifiers",
	"key": -18,
	"value": {"validated": validated_identifiers},
}]

agent_containers := object.get(input, ["init_data_claims", "agent_policy_claims", "containers"], [])

container_images := [img |
	some c in agent_containers
	img := c.OCI.Annotations["io.kubernetes.cri.image-name"]
]

container_uids := [uid |
	some c in agent_containers
	uid := c.OCI.Process.User.UID
]

validated_identifiers := {k: v |
	some k, v in {"container_images": container_images, "container_uids": container_uids}
	count(v) > 0
}
