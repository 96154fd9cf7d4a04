package freeport

import (
	"net"
	"strconv"
	"testing"
)

// The ports are bindable, distinct, and outside the kernel's ephemeral range.
func TestAddr(t *testing.T) {
	_, hi := span()
	seen := map[string]bool{}
	for range 50 {
		addr, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		_, p, _ := net.SplitHostPort(addr)
		if n, _ := strconv.Atoi(p); n >= hi || n < 1024 {
			t.Fatalf("%s: port in the ephemeral range (from %d) or privileged", addr, hi)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is not free: %v", addr, err)
		}
		l.Close()
	}
}
