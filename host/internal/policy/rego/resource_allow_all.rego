# Releases every resource to any holder of a valid attestation token,
# whatever its verdict. For development only.
package policy

allow if data.plugin == "resource"
