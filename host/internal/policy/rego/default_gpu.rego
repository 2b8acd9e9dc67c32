# Default attestation policy for the "gpu" TEE class: contraindicated until
# the device's claims match registered reference values.
#
# AR4SI values as in default_cpu: executables 3/33, hardware 2/97,
# configuration 2 (approved) / 3 (no known vulnerable setting) / 36.
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

rv(name) := v if {
	v := query_reference_value(name)
	is_array(v)
} else := [v] if {
	v := query_reference_value(name)
	v != null
	not is_object(v)
}

accepted(name, x) if {
	some v in rv(name)
	lower(sprintf("%v", [v])) == lower(sprintf("%v", [x]))
}

#### sampledevice (test device)

hardware := 2 if accepted("device_svn", input.sampledevice.svn)

#### nvidia (local SPDM verification against NVIDIA's device root)

# The verifier has checked the device certificate chain and the report
# signature; the firmware must be one the operator allows.
hardware := 2 if {
	input.nvidia.config.fwid
	accepted("allowed_vbios_versions", input.nvidia.config.vbios_version)
}

configuration := 2 if {
	accepted("allowed_vbios_versions", input.nvidia.config.vbios_version)
	accepted("allowed_driver_versions", input.nvidia.config.driver_version)
}

# nvidia_measurements: {"<index>": ["<hex>", ...], ...}; every listed index
# must match.
executables := 3 if {
	ref := query_reference_value("nvidia_measurements")
	is_object(ref)
	count(ref) > 0
	every idx, allowed in ref {
		some v in allowed
		lower(v) == lower(input.nvidia.measurements[idx])
	}
}
