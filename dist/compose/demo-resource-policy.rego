# Demonstration resource policy of dist/compose: release every resource to
# any guest holding a token this broker trusts, whatever its evidence (the
# sample TEE included). Not for production: the default policy releases only
# to affirming, non-sample evidence.
package policy

allow if data.plugin == "resource"
