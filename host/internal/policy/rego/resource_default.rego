# Default resource policy: release resources only to guests whose every
# appraisal is affirming, and never to the sample TEE, whose evidence proves
# nothing.
package policy

default allow := false

allow if {
	data.plugin == "resource"
	count(input.submods) > 0
	every submod in input.submods {
		submod["ear.status"] == "affirming"
	}
	not sample_evidence
}

sample_evidence if {
	some submod in input.submods
	submod["ear.veraison.annotated-evidence"].sample
}
