package pluginclient

import "syscall"

// sysProcAttr makes the kernel kill a plugin when the host dies, even by
// SIGKILL, so that no plugin outlives its host. (Pdeathsig is tied to the
// thread that forked; Go's runtime keeps its threads, so in practice this
// is the host's lifetime.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
