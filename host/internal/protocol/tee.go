package protocol

// teeClass maps every TEE name of kbs-types to its EAR submodule class.
var teeClass = map[string]string{
	"sample":       "cpu",
	"snp":          "cpu",
	"tdx":          "cpu",
	"sgx":          "cpu",
	"az-snp-vtpm":  "cpu",
	"az-tdx-vtpm":  "cpu",
	"cca":          "cpu",
	"csv":          "cpu",
	"se":           "cpu",
	"tpm":          "cpu",
	"sampledevice": "gpu",
	"nvidia":       "gpu",
	"hygondcu":     "dcu",
	"nvidia-dpu":   "dpu",
}

// teeAliases are names older guests send (kbs-types before 0.14).
var teeAliases = map[string]string{
	"azsnpvtpm": "az-snp-vtpm",
	"aztdxvtpm": "az-tdx-vtpm",
}

// CanonicalTEE returns the canonical name of tee and whether it is a TEE
// of the protocol at all.
func CanonicalTEE(tee string) (string, bool) {
	if c, ok := teeAliases[tee]; ok {
		tee = c
	}
	_, ok := teeClass[tee]
	return tee, ok
}

// TEEClass returns the EAR submodule class of a canonical TEE name.
func TEEClass(tee string) string { return teeClass[tee] }
