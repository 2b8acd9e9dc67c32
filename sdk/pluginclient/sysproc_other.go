//go:build !linux

package pluginclient

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
