package proxy

import (
	"net"
	"syscall"
)

// connAlive reports whether an idle connection is still open and quiet: a
// non-blocking peek sees neither the instance's close (EOF, a reset) nor stray
// bytes. One syscall, paid by connections idle for aliveCheckAfter, by
// requests that cannot replace a dead connection, and by dropDead.
func connAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = n <= 0 && err == syscall.EAGAIN
		return true // never wait for readiness
	})
	return err == nil && alive
}
