package policy

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/gokbs/kbs/sdk"
)

func TestStatus(t *testing.T) {
	tests := map[string]struct {
		tv   map[string]int
		want string
	}{
		"empty":                     {map[string]int{}, StatusNone},
		"all zero":                  {map[string]int{"executables": 0, "hardware": 0}, StatusNone},
		"one and minus one":         {map[string]int{"executables": 1, "hardware": -1}, StatusNone},
		"affirming":                 {map[string]int{"executables": 2, "hardware": 0}, StatusAffirming},
		"affirming upper bound":     {map[string]int{"executables": 31}, StatusAffirming},
		"negative affirming":        {map[string]int{"executables": -31}, StatusAffirming},
		"warning lower bound":       {map[string]int{"executables": 32}, StatusWarning},
		"warning upper bound":       {map[string]int{"executables": 95}, StatusWarning},
		"negative warning":          {map[string]int{"executables": -32}, StatusWarning},
		"contraindicated":           {map[string]int{"hardware": 96}, StatusContraindicated},
		"contraindicated max":       {map[string]int{"hardware": 127}, StatusContraindicated},
		"negative contraindicated":  {map[string]int{"hardware": -128}, StatusContraindicated},
		"worst wins":                {map[string]int{"executables": 3, "configuration": 36, "hardware": 2}, StatusWarning},
		"trustee default, no match": {map[string]int{"executables": 33, "hardware": 97, "configuration": 36}, StatusContraindicated},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Status(tc.tv); got != tc.want {
				t.Fatalf("Status(%v) = %s, want %s", tc.tv, got, tc.want)
			}
		})
	}
}

// Reference values that make each testdata claims file affirming.
var (
	sampleRVs = map[string]any{
		"launch_digest": []any{"abcde"}, "svn": []any{"1"},
		"major_version": 1, "minimum_minor_version": 4,
	}
	snpRVs = map[string]any{
		"snp_launch_measurement": []any{"A1F3930413247BB38CFC171579EA3C12D5FE4901F0C792F63FD75D98F1EF827C23500644E0E692E6BE917F9050D3D38C"},
		"snp_bootloader":         []any{3}, "snp_microcode": []any{"115"}, "snp_snp_svn": []any{8}, "snp_tee_svn": []any{0},
	}
	snpConfigRVs = map[string]any{
		"snp_guest_abi_major": 0, "snp_guest_abi_minor": 31, "snp_smt_allowed": true,
		"snp_single_socket": false, "snp_smt_enabled": true, "snp_tsme_enabled": false,
	}
	tdxRealRVs = map[string]any{
		"mr_td": []any{"705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b689cac1599ccea1b7d420483a9ce5f031"},
	}
	azSNPRVs = map[string]any{
		"measurement":    []any{"ofOTBBMke7OM/BcVeeo8EtX+SQHwx5L2P9ddmPHvgnwjUAZE4OaS5r6Rf5BQ09OM"},
		"snp_pcr11":      []any{"0000000000000000000000000000000000000000000000000000000000000000"},
		"tcb_bootloader": []any{3}, "tcb_microcode": []any{115}, "tcb_snp": []any{8}, "tcb_tee": []any{0},
	}
	azTDXRVs = map[string]any{
		"tdx_pcr11": []any{"1111111111111111111111111111111111111111111111111111111111111111"},
		"mr_td":     []any{"fe27b2aa3a05ec56864c308aff03dd13c189a6112d21e417ec1afe626a8cb9d91482d1379ec02fe6308972950a930d0a"},
	}
	sgxRVs = map[string]any{
		"mr_enclave": []any{"5e8f3c7c7a4a1c7ddeb0f6a6ec1c8c6e0c7f2d3b4b0a9e8d7c6b5a4938271605"},
		"mr_signer":  []any{"83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"},
	}
	ccaRVs = map[string]any{
		"cca_realm_initial_measurement":   []any{"Q0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQw=="},
		"cca_platform_implementation_id":  []any{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
		"cca_realm_personalization_value": []any{"QURBREFEQURBREFEQURBREFEQURBREFEQURBREFEQURBREFEQURBREFEQURBREFEQURBREFEQURBREFEQURBRA=="},
	}
	csvRVs = map[string]any{"csv_measurement": []any{"9f1b8c6c0fd83e3d1c6f2a0e54d5a1b6c2b1a3f4e5d6c7b8a9f0e1d2c3b4a596"}}
	tpmRVs = map[string]any{
		"trusted_aks": []any{"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"},
		"tpm_pcr11":   []any{"a5b0f0e6a3c8d6e7a9f1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b"},
	}
)

func merge(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

// tdxRealClaims is trustee's parsed claims of a real TDX quote (with its
// CCEL), plus the DCAP results that the verifier adds. The TD was launched
// with debug on.
func tdxRealClaims(t testing.TB) map[string]any {
	in := evidenceClaims(t, "tdx", "tdx/parse_tdx_claims_expected.json")
	in = with(t, in, []string{"tdx", "tcb_status"}, "UpToDate")
	return with(t, in, []string{"tdx", "collateral_expiration_status"}, "0")
}

func TestDefaultCPUPolicy(t *testing.T) {
	tests := map[string]struct {
		input func(t testing.TB) map[string]any
		rvs   map[string]any
		// want is the vector restricted to executables, hardware and
		// configuration (the policy sets the other claims to 0).
		want       [3]int
		wantStatus string
	}{
		"sample without reference values": {
			input: func(t testing.TB) map[string]any { return claims(t, "sample") },
			want:  [3]int{33, 97, 2}, wantStatus: StatusContraindicated,
		},
		"sample with reference values": {
			input: func(t testing.TB) map[string]any { return claims(t, "sample") },
			rvs:   sampleRVs, want: [3]int{3, 2, 2}, wantStatus: StatusAffirming,
		},
		"sample with only the required values": {
			input: func(t testing.TB) map[string]any { return claims(t, "sample") },
			rvs:   map[string]any{"launch_digest": "abcde", "svn": "1"}, want: [3]int{3, 2, 2}, wantStatus: StatusAffirming,
		},
		"sample with a wrong launch digest": {
			input: func(t testing.TB) map[string]any { return claims(t, "sample") },
			rvs:   merge(sampleRVs, map[string]any{"launch_digest": []any{"fffff"}}), want: [3]int{33, 2, 2}, wantStatus: StatusWarning,
		},
		"sample below the minimum minor version": {
			input: func(t testing.TB) map[string]any { return claims(t, "sample") },
			rvs:   merge(sampleRVs, map[string]any{"minimum_minor_version": 5}), want: [3]int{3, 97, 2}, wantStatus: StatusContraindicated,
		},
		"sample of another major version": {
			input: func(t testing.TB) map[string]any { return claims(t, "sample") },
			rvs:   merge(sampleRVs, map[string]any{"major_version": []any{"2"}}), want: [3]int{3, 97, 2}, wantStatus: StatusContraindicated,
		},
		"sample in debug mode": {
			input: func(t testing.TB) map[string]any {
				return with(t, claims(t, "sample"), []string{"sample", "debug"}, true)
			},
			rvs: sampleRVs, want: [3]int{3, 2, 36}, wantStatus: StatusWarning,
		},
		"snp without reference values": {
			input: func(t testing.TB) map[string]any { return claims(t, "snp") },
			want:  [3]int{33, 97, 3}, wantStatus: StatusContraindicated,
		},
		"snp with measurement and TCB": {
			input: func(t testing.TB) map[string]any { return claims(t, "snp") },
			rvs:   snpRVs, want: [3]int{3, 2, 3}, wantStatus: StatusAffirming,
		},
		"snp with pinned configuration": {
			input: func(t testing.TB) map[string]any { return claims(t, "snp") },
			rvs:   merge(snpRVs, snpConfigRVs), want: [3]int{3, 2, 2}, wantStatus: StatusAffirming,
		},
		"snp with an older microcode": {
			input: func(t testing.TB) map[string]any { return claims(t, "snp") },
			rvs:   merge(snpRVs, map[string]any{"snp_microcode": []any{116}}), want: [3]int{3, 97, 3}, wantStatus: StatusContraindicated,
		},
		"snp with debug allowed": {
			input: func(t testing.TB) map[string]any {
				return with(t, claims(t, "snp"), []string{"snp", "policy_debug_allowed"}, true)
			},
			rvs: merge(snpRVs, snpConfigRVs), want: [3]int{3, 2, 36}, wantStatus: StatusWarning,
		},
		"snp with migration agent allowed": {
			input: func(t testing.TB) map[string]any {
				return with(t, claims(t, "snp"), []string{"snp", "policy_migrate_ma"}, true)
			},
			rvs: snpRVs, want: [3]int{3, 2, 36}, wantStatus: StatusWarning,
		},
		"tdx real quote in debug mode": {
			input: tdxRealClaims,
			rvs:   tdxRealRVs, want: [3]int{33, 2, 36}, wantStatus: StatusWarning,
		},
		"tdx real quote, debug off, RTMRs registered": {
			input: func(t testing.TB) map[string]any {
				in := with(t, tdxRealClaims(t), []string{"tdx", "td_attributes", "debug"}, false)
				return in
			},
			rvs: merge(tdxRealRVs, map[string]any{
				"rtmr_1": []any{"559CFCF42716ED6C40A48A73D5ACB7DA255435012F0A9F00FBE8C1C57612EDE486A5684C4C9FF3DDF52315FCDCA3A596"},
				"rtmr_2": []any{strings.Repeat("0", 96)},
			}),
			want: [3]int{3, 2, 2}, wantStatus: StatusAffirming,
		},
		"tdx out of date": {
			input: func(t testing.TB) map[string]any {
				return with(t, tdxRealClaims(t), []string{"tdx", "tcb_status"}, "OutOfDate")
			},
			rvs: tdxRealRVs, want: [3]int{33, 97, 36}, wantStatus: StatusContraindicated,
		},
		"tdx with expired collateral": {
			input: func(t testing.TB) map[string]any {
				return with(t, tdxRealClaims(t), []string{"tdx", "collateral_expiration_status"}, "1")
			},
			rvs: tdxRealRVs, want: [3]int{33, 97, 36}, wantStatus: StatusContraindicated,
		},
		"tdx with a pinned TDX module that differs": {
			input: tdxRealClaims,
			rvs:   merge(tdxRealRVs, map[string]any{"mr_seam": []any{"00"}}), want: [3]int{33, 97, 36}, wantStatus: StatusContraindicated,
		},
		"az-snp-vtpm": {
			input: func(t testing.TB) map[string]any { return claims(t, "az-snp-vtpm") },
			rvs:   azSNPRVs, want: [3]int{3, 2, 2}, wantStatus: StatusAffirming,
		},
		"az-snp-vtpm with another PCR11": {
			input: func(t testing.TB) map[string]any { return claims(t, "az-snp-vtpm") },
			rvs:   merge(azSNPRVs, map[string]any{"snp_pcr11": []any{"ff"}}), want: [3]int{33, 2, 2}, wantStatus: StatusWarning,
		},
		"az-tdx-vtpm (flattened PCRs)": {
			input: func(t testing.TB) map[string]any { return claims(t, "az-tdx-vtpm") },
			rvs:   azTDXRVs, want: [3]int{3, 2, 2}, wantStatus: StatusAffirming,
		},
		"az-tdx-vtpm without reference values": {
			input: func(t testing.TB) map[string]any { return claims(t, "az-tdx-vtpm") },
			want:  [3]int{33, 97, 2}, wantStatus: StatusContraindicated,
		},
		"sgx": {
			input: func(t testing.TB) map[string]any { return claims(t, "sgx") },
			rvs:   sgxRVs, want: [3]int{3, 2, 2}, wantStatus: StatusAffirming,
		},
		"sgx debug enclave": {
			input: func(t testing.TB) map[string]any {
				return with(t, claims(t, "sgx"), []string{"sgx", "body", "attributes"}, "0700000000000000e700000000000000")
			},
			rvs: sgxRVs, want: [3]int{3, 2, 36}, wantStatus: StatusWarning,
		},
		"cca (synthetic token claims)": {
			input: func(t testing.TB) map[string]any { return evidenceClaims(t, "cca", "cca/cca-claims.json") },
			rvs:   ccaRVs, want: [3]int{3, 2, 2}, wantStatus: StatusAffirming,
		},
		"cca without reference values": {
			input: func(t testing.TB) map[string]any { return evidenceClaims(t, "cca", "cca/cca-claims.json") },
			want:  [3]int{33, 97, 36}, wantStatus: StatusContraindicated,
		},
		"csv": {
			input: func(t testing.TB) map[string]any { return claims(t, "csv") },
			rvs:   csvRVs, want: [3]int{3, 2, 2}, wantStatus: StatusAffirming,
		},
		"csv debuggable": {
			input: func(t testing.TB) map[string]any {
				return with(t, claims(t, "csv"), []string{"csv", "policy", "nodbg"}, false)
			},
			rvs: csvRVs, want: [3]int{3, 2, 36}, wantStatus: StatusWarning,
		},
		"tpm with a trusted AK": {
			input: func(t testing.TB) map[string]any { return claims(t, "tpm") },
			rvs:   tpmRVs, want: [3]int{3, 2, 0}, wantStatus: StatusAffirming,
		},
		"tpm with an unknown AK": {
			input: func(t testing.TB) map[string]any { return claims(t, "tpm") },
			rvs:   map[string]any{"tpm_pcr11": tpmRVs["tpm_pcr11"]}, want: [3]int{33, 97, 36}, wantStatus: StatusContraindicated,
		},
		"unknown TEE": {
			input: func(t testing.TB) map[string]any { return map[string]any{"mystery": map[string]any{"ok": true}} },
			rvs:   sampleRVs, want: [3]int{33, 97, 36}, wantStatus: StatusContraindicated,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.register(t, tc.rvs)
			in := tc.input(t)
			a, err := f.e.Appraise(context.Background(), "cpu", in)
			if err != nil {
				t.Fatal(err)
			}
			got := [3]int{a.TrustVector["executables"], a.TrustVector["hardware"], a.TrustVector["configuration"]}
			if got != tc.want || a.Status != tc.wantStatus {
				t.Fatalf("executables, hardware, configuration = %v, status %s; want %v, %s", got, a.Status, tc.want, tc.wantStatus)
			}
			if len(a.TrustVector) != len(TrustClaims) {
				t.Errorf("trust vector has %d claims, want all %d", len(a.TrustVector), len(TrustClaims))
			}
			if a.PolicyID != "default_cpu" {
				t.Errorf("policy ID %q", a.PolicyID)
			}
		})
	}
}

func TestDefaultGPUPolicy(t *testing.T) {
	nvidia := map[string]any{"nvidia": map[string]any{
		"arch": "HOPPER", "uuid": "GPU-1",
		"measurements": map[string]any{"2": "aa", "5": "bb"},
		"config":       map[string]any{"fwid": "f5c3", "vbios_version": "96.00.9F.00.01", "driver_version": "550.90.07"},
	}}
	tests := map[string]struct {
		input      map[string]any
		rvs        map[string]any
		want       [3]int
		wantStatus string
	}{
		"sampledevice with svn": {
			input: map[string]any{"sampledevice": map[string]any{"svn": "2"}},
			rvs:   map[string]any{"device_svn": []any{"2"}}, want: [3]int{33, 2, 36}, wantStatus: StatusWarning,
		},
		"sampledevice without reference values": {
			input: map[string]any{"sampledevice": map[string]any{"svn": "2"}},
			want:  [3]int{33, 97, 36}, wantStatus: StatusContraindicated,
		},
		"nvidia with allowed firmware and measurements": {
			input: nvidia,
			rvs: map[string]any{
				"allowed_vbios_versions": []any{"96.00.9f.00.01"}, "allowed_driver_versions": []any{"550.90.07"},
				"nvidia_measurements": map[string]any{"2": []any{"AA"}, "5": []any{"cc", "bb"}},
			},
			want: [3]int{3, 2, 2}, wantStatus: StatusAffirming,
		},
		"nvidia with a measurement mismatch": {
			input: nvidia,
			rvs: map[string]any{
				"allowed_vbios_versions": []any{"96.00.9F.00.01"}, "allowed_driver_versions": []any{"550.90.07"},
				"nvidia_measurements": map[string]any{"2": []any{"00"}},
			},
			want: [3]int{33, 2, 2}, wantStatus: StatusWarning,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.register(t, tc.rvs)
			a, err := f.e.Appraise(context.Background(), "gpu", tc.input)
			if err != nil {
				t.Fatal(err)
			}
			got := [3]int{a.TrustVector["executables"], a.TrustVector["hardware"], a.TrustVector["configuration"]}
			if got != tc.want || a.Status != tc.wantStatus {
				t.Fatalf("vector %v status %s; want %v %s", got, a.Status, tc.want, tc.wantStatus)
			}
		})
	}
}

// TestGoldenAppraisals pins the whole EAR submodule that the token issuer
// receives: vector, status, policy ID, annotated evidence and extensions.
func TestGoldenAppraisals(t *testing.T) {
	tests := map[string]struct {
		input string
		rvs   map[string]any
	}{
		"ear_sample_affirming":       {"sample", sampleRVs},
		"ear_sample_contraindicated": {"sample", nil},
		"ear_snp_affirming":          {"snp", merge(snpRVs, snpConfigRVs)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.register(t, tc.rvs)
			a, err := f.e.Appraise(context.Background(), "cpu", claims(t, tc.input))
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(map[string]any{"cpu0": a}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name, append(got, '\n'))
		})
	}
}

func TestReferenceValueChangesApplyWithoutResettingPolicy(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	in := claims(t, "sample")
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"no values", func() {}, StatusContraindicated},
		{"values registered", func() { f.register(t, sampleRVs) }, StatusAffirming},
		{"launch digest replaced", func() { f.register(t, map[string]any{"launch_digest": []any{"other"}}) }, StatusWarning},
		{"launch digest restored", func() { f.register(t, map[string]any{"launch_digest": []any{"other", "abcde"}}) }, StatusAffirming},
		{"values expired", func() { f.clk.t = t0.AddDate(1, 0, 1) }, StatusContraindicated},
		{"values registered again", func() { f.register(t, sampleRVs) }, StatusAffirming},
	}
	for _, st := range steps {
		st.do()
		a, err := f.e.Appraise(ctx, "cpu", in)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if a.Status != st.want {
			t.Fatalf("%s: status %s (vector %v), want %s", st.name, a.Status, a.TrustVector, st.want)
		}
	}
}

func TestSetAttestationPolicy(t *testing.T) {
	tests := map[string]struct {
		id, src  string
		wantErr  string // substring; empty means accepted
		wantLine int
		wantCol  int
	}{
		"minimal v1": {
			id: "default_cpu", src: "package policy\n\ntrust_claims := {\"executables\": 3}\n",
		},
		"trustee-era v0 syntax": {
			id: "default_cpu", src: "package policy\n\ndefault hardware = 97\n\nhardware = 2 {\n  input.sample\n}\n\ntrust_claims = {\"hardware\": hardware}\n",
		},
		"import rego.v1": {
			id: "custom", src: "package policy\nimport rego.v1\n\ntrust_claims := {\"executables\": 3} if { true }\n",
		},
		"parse error": {
			id: "default_cpu", src: "package policy\n\ntrust_claims := {\n  \"executables\": 3,\n  \"hardware\" 2,\n}\n",
			wantErr: "rego_parse_error", wantLine: 5, wantCol: 14,
		},
		"v0 policy with a real mistake": {
			id: "default_cpu", src: "package policy\n\ntrust_claims = x {\n  x := {\"executables\": 3}\n  y == \n}\n",
			wantErr: "rego_parse_error", wantLine: 6, wantCol: 1,
		},
		"unsafe variable": {
			id: "default_cpu", src: "package policy\n\ntrust_claims := {\"executables\": x}\n",
			wantErr: "rego_unsafe_var_error", wantLine: 3, wantCol: 33,
		},
		"type error": {
			id: "default_cpu", src: "package policy\n\ntrust_claims := {\"executables\": 3} if {\n\tcount(1) > 0\n}\n",
			wantErr: "rego_type_error", wantLine: 4, wantCol: 2,
		},
		"network access": {
			id: "default_cpu", src: "package policy\n\ntrust_claims := {\"executables\": 3} if {\n\thttp.send({\"method\": \"get\", \"url\": \"http://x\"})\n}\n",
			wantErr: "undefined function http.send", wantLine: 4, wantCol: 2,
		},
		"reference value builtin with a wrong argument type": {
			id: "default_cpu", src: "package policy\n\ntrust_claims := {\"executables\": 3} if query_reference_value(1)\n",
			wantErr: "rego_type_error", wantLine: 3,
		},
		"wrong package": {
			id: "default_cpu", src: "package attestation\n\ntrust_claims := {\"executables\": 3}\n",
			wantErr: `the package must be "policy", not "attestation"`, wantLine: 1, wantCol: 1,
		},
		"no trust_claims": {
			id: "default_cpu", src: "package policy\n\nexecutables := 3\n",
			wantErr: "must define trust_claims",
		},
		"empty":  {id: "default_cpu", src: "", wantErr: "rego_parse_error"},
		"bad ID": {id: "../etc", src: "package policy\ntrust_claims := {}\n", wantErr: "attestation policy ID"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			before, _ := f.e.GetAttestationPolicy(tc.id)
			err := f.e.SetAttestationPolicy(ctx, tc.id, tc.src)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				got, err := f.e.GetAttestationPolicy(tc.id)
				if err != nil || got != tc.src {
					t.Fatalf("GetAttestationPolicy = %q, %v", got, err)
				}
				stored, err := f.st.Get(ctx, "attestation-policy", tc.id)
				if err != nil || string(stored) != tc.src {
					t.Fatalf("stored %q, %v", stored, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("error %v is not an invalid-argument error", err)
			}
			if tc.wantLine > 0 {
				var ce *CompileError
				if !errors.As(err, &ce) || len(ce.Problems) == 0 {
					t.Fatalf("error %v carries no CompileError", err)
				}
				p := ce.Problems[0]
				if p.Line != tc.wantLine || (tc.wantCol > 0 && p.Column != tc.wantCol) {
					t.Fatalf("problem at %d:%d (%s), want %d:%d", p.Line, p.Column, p.Message, tc.wantLine, tc.wantCol)
				}
			}
			if after, _ := f.e.GetAttestationPolicy(tc.id); after != before {
				t.Fatal("a refused policy replaced the one in use")
			}
		})
	}
}

func TestCustomAttestationPolicyResults(t *testing.T) {
	tests := map[string]struct {
		src       string
		want      map[string]int
		wantExt   map[string]any
		wantErr   string
		wantClass sdk.Class
	}{
		"extensions as trustee's list": {
			src:     "package policy\ntrust_claims := {\"hardware\": 2}\nextensions := [{\"name\": \"x.tag\", \"key\": -70000, \"value\": {\"a\": 1}}]\n",
			want:    map[string]int{"hardware": 2},
			wantExt: map[string]any{"x.tag": map[string]any{"a": json.Number("1")}},
		},
		"extensions as an object": {
			src:     "package policy\ntrust_claims := {\"hardware\": 2}\nextensions := {\"x.tag\": \"v\"}\n",
			want:    map[string]int{"hardware": 2},
			wantExt: map[string]any{"x.tag": "v"},
		},
		"negative claim": {
			src:  "package policy\ntrust_claims := {\"hardware\": -1, \"executables\": 2}\n",
			want: map[string]int{"hardware": -1, "executables": 2},
		},
		"undefined trust_claims": {
			src: "package policy\ntrust_claims := {\"hardware\": 2} if input.nothing\n", wantErr: "trust_claims is undefined", wantClass: sdk.ClassInternal,
		},
		"no claim": {
			src: "package policy\ntrust_claims := {}\n", wantErr: "at least one is required", wantClass: sdk.ClassInternal,
		},
		"unknown claim": {
			src: "package policy\ntrust_claims := {\"firmware\": 2}\n", wantErr: `unknown claim "firmware"`, wantClass: sdk.ClassInternal,
		},
		"out of range": {
			src: "package policy\ntrust_claims := {\"hardware\": 300}\n", wantErr: "-128..127", wantClass: sdk.ClassInternal,
		},
		"not an integer": {
			src: "package policy\ntrust_claims := {\"hardware\": 2.5}\n", wantErr: "-128..127", wantClass: sdk.ClassInternal,
		},
		"reserved extension": {
			src:     "package policy\ntrust_claims := {\"hardware\": 2}\nextensions := {\"ear.status\": \"affirming\"}\n",
			wantErr: `invalid name "ear.status"`, wantClass: sdk.ClassInternal,
		},
		"conflicting rules": {
			src:     "package policy\ntrust_claims := {\"hardware\": h}\nh := 2 if input.a\nh := 3 if input.a\n",
			wantErr: "eval_conflict_error", wantClass: sdk.ClassInternal,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			if err := f.e.SetAttestationPolicy(ctx, "default_cpu", tc.src); err != nil {
				t.Fatal(err)
			}
			a, err := f.e.Appraise(ctx, "cpu", map[string]any{"a": true})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if c := sdk.ClassOf(err); c != tc.wantClass {
					t.Fatalf("class %s, want %s", c, tc.wantClass)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(a.TrustVector, tc.want) {
				t.Fatalf("vector %v, want %v", a.TrustVector, tc.want)
			}
			gotExt, _ := json.Marshal(a.Extensions)
			wantExt, _ := json.Marshal(tc.wantExt)
			if string(gotExt) != string(wantExt) {
				t.Fatalf("extensions %s, want %s", gotExt, wantExt)
			}
		})
	}
}

func TestAppraiseUnknownClass(t *testing.T) {
	f := newFixture(t)
	_, err := f.e.Appraise(context.Background(), "dcu", map[string]any{})
	if !errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), "default_dcu") {
		t.Fatalf("error %v, want not found naming default_dcu", err)
	}
}

func TestAppraiseHonoursCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := newFixture(t)
	if _, err := f.e.Appraise(ctx, "cpu", claims(t, "sample")); err == nil {
		t.Fatal("appraisal ran with a cancelled context")
	}
}

func TestListAttestationPolicies(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if err := f.e.SetAttestationPolicy(ctx, "default_dcu", "package policy\ntrust_claims := {\"hardware\": 2}\n"); err != nil {
		t.Fatal(err)
	}
	got := f.e.ListAttestationPolicies()
	want := []string{"default_cpu", "default_dcu", "default_gpu"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("List = %v, want %v", got, want)
	}
	if _, err := f.e.GetAttestationPolicy("nope"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Get of a missing policy: %v", err)
	}
}
