package main

import (
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// origins are the real HTTP servers behind every instance: one handler on many
// loopback ports. Every instance URL is a distinct path on one of the ports, so
// that URLs are unique across slugs. Every path answers 200; hits on .../healthz
// are health probes and counted apart from routed requests.
type origins struct {
	Ports   []int
	servers []*http.Server
	probes  atomic.Int64
	routed  atomic.Int64
}

func startOrigins(n int) (*origins, error) {
	o := &origins{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/healthz") {
			o.probes.Add(1)
		} else {
			o.routed.Add(1)
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			o.close()
			return nil, err
		}
		s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
		o.servers = append(o.servers, s)
		o.Ports = append(o.Ports, ln.Addr().(*net.TCPAddr).Port)
		go func() { _ = s.Serve(ln) }()
	}
	return o, nil
}

func (o *origins) close() {
	for _, s := range o.servers {
		_ = s.Close()
	}
}
