// Command benchorigin is the origin of hack/bench-proxy.sh: a minimal HTTP/1.1
// server answering every request with a small fixed body.
package main

import (
	"flag"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:28081", "address to serve on (loopback only)")
	flag.Parse()
	body := []byte(`{"hello": "world"}` + "\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		_, _ = w.Write(body)
	})
	log.Fatal((&http.Server{Addr: *addr, Handler: h}).ListenAndServe())
}
