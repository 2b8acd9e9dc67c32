# Demonstration resource policy of configs/passport/broker2.toml: release
# every resource to the holder of a token that broker 2 trusts, whatever
# the evidence was (the sample TEE included). Not for production.
package policy

allow if data.plugin == "resource"
