# Releases nothing.
package policy

default allow := false
