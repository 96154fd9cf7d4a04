// Command benchorigin is the origin of hack/bench-proxy.sh: a minimal HTTP/1.1
// server answering every request with a fixed body whose size the path picks:
// .../1k is 1 KiB, .../64k is 64 KiB, anything else a small JSON object.
package main

import (
	"bytes"
	"flag"
	"log"
	"net/http"
	"strconv"
	"strings"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:28081", "address to serve on (loopback only)")
	flag.Parse()
	small := []byte(`{"hello": "world"}` + "\n")
	k1 := bytes.Repeat([]byte("x"), 1<<10)
	k64 := bytes.Repeat([]byte("x"), 64<<10)
	ctype := []string{"application/json"}
	octets := []string{"application/octet-stream"}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ct := small, ctype
		switch {
		case strings.HasSuffix(r.URL.Path, "/1k"):
			body, ct = k1, octets
		case strings.HasSuffix(r.URL.Path, "/64k"):
			body, ct = k64, octets
		}
		hdr := w.Header()
		hdr["Content-Type"] = ct
		hdr["Content-Length"] = []string{strconv.Itoa(len(body))} // not chunked, whatever the size
		_, _ = w.Write(body)
	})
	log.Fatal((&http.Server{Addr: *addr, Handler: h}).ListenAndServe())
}
