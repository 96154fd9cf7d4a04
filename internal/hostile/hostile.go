// Package hostile holds the raw-bytes hostile-input cases that slugway's proxy
// is tested with (proxy/integration) and compared on against nginx and HAProxy
// (hack/hostile-compare.sh), and the two ends to run them: a raw TCP instance
// that records exactly what reached it, and a client that sends a case's bytes
// and records the answers and whether the connection was closed.
package hostile

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// Slug is the path's first segment in every case: proxies route /hostile/... to
// the instance.
const Slug = "hostile"

// Case is one hostile input: raw request bytes, and what the instance answers.
type Case struct {
	Name string
	// Request is sent as is, in one write.
	Request string
	// Response is what the instance answers each request with ("" for a plain
	// "200 OK" with the body "ok").
	Response string
	// Headers are request fields that must not reach the instance with the
	// client's value (checked by Check with the client's value "spoofed").
	Headers []string
	// Set are fields the proxy must set on what reaches the instance, with
	// these values ("$client": the client's IP address).
	Set map[string]string
	// Want is what slugway must do.
	Want Want
}

// Want is the behaviour required of slugway.
type Want struct {
	// Status is the first answer's status (0: any).
	Status int
	// Answers is how many responses the client may get at most (0: 1).
	Answers int
	// Close: the proxy closes the connection after its answer.
	Close bool
	// Reached is how many requests may reach the instance at most.
	Reached int
}

// Seen is one request as the instance received it.
type Seen struct {
	Line   string
	Header textproto.MIMEHeader
	Body   string
}

// Result is what a case did on one proxy.
type Result struct {
	Statuses []int
	// Closed: the proxy closed the connection after its answers.
	Closed  bool
	Reached []Seen
}

const bigHeadSize = 1 << 20

// Cases are the hostile inputs of issue #13's table, and the framing cases
// that RFC 9112 section 6.3 and nginx refuse.
func Cases() []Case {
	s := "/" + Slug
	big := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + strings.Repeat("X-Big: "+strings.Repeat("b", 1016)+"\r\n", bigHeadSize/1024) + "\r\nok"
	smuggled := "GET " + s + "/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	chunkedEnd := "0\r\n\r\n"
	return []Case{
		{Name: "CL and TE, a request hidden in the body",
			Request: "POST " + s + "/a HTTP/1.1\r\nHost: x\r\nContent-Length: " + itoa(len(chunkedEnd)+len(smuggled)) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedEnd + smuggled,
			Want:    Want{Status: 400, Close: true}},
		{Name: "TE and CL, a request hidden after the chunked body",
			Request: "POST " + s + "/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" + chunkedEnd + smuggled,
			Want:    Want{Status: 400, Close: true}},
		{Name: "two different Content-Lengths",
			Request: "POST " + s + "/a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nContent-Length: 5\r\n\r\nhello!",
			Want:    Want{Status: 400, Close: true}},
		{Name: "Content-Length list",
			Request: "POST " + s + "/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
			Want:    Want{Status: 400, Close: true}},
		{Name: "Transfer-Encoding chunked, identity",
			Request: "POST " + s + "/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n" + chunkedEnd,
			Want:    Want{Status: 400, Close: true}},
		{Name: "Transfer-Encoding xchunked",
			Request: "POST " + s + "/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n" + chunkedEnd,
			Want:    Want{Status: 400, Close: true}},
		{Name: "obs-fold",
			Request: "GET " + s + "/a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
			Want:    Want{Status: 400, Close: true}},
		{Name: "bare CR in a header value",
			Request: "GET " + s + "/a HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
			Want:    Want{Status: 400, Close: true}},
		{Name: "bare LF line ending",
			Request: "GET " + s + "/a HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
			Want:    Want{Status: 400, Close: true}},
		{Name: "NUL in a header value",
			Request: "GET " + s + "/a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
			Want:    Want{Status: 400, Close: true}},
		{Name: "Upgrade: h2c with HTTP2-Settings",
			Request: "GET " + s + "/a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
			Headers: []string{"Upgrade", "Http2-Settings"},
			Want:    Want{Reached: 1}},
		{Name: "instance sends a 1 MiB response head (HTTP/1.1 client)",
			Request: "GET " + s + "/a HTTP/1.1\r\nHost: x\r\n\r\n", Response: big,
			Want: Want{Status: 502, Reached: 1}},
		{Name: "instance sends a 1 MiB response head (HTTP/1.0 client)",
			Request: "GET " + s + "/a HTTP/1.0\r\nHost: x\r\n\r\n", Response: big,
			Want: Want{Status: 502, Reached: 1, Close: true}},
		{Name: "instance sends a bare CR in the reason phrase",
			Request: "GET " + s + "/a HTTP/1.1\r\nHost: x\r\n\r\n", Response: "HTTP/1.1 200 O\rK\r\nContent-Length: 2\r\n\r\nok",
			Want: Want{Status: 502, Reached: 1}},
		{Name: "instance sends NUL in a header value",
			Request: "GET " + s + "/a HTTP/1.1\r\nHost: x\r\n\r\n", Response: "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
			Want: Want{Status: 502, Reached: 1}},
		{Name: "client-identity headers from an untrusted client",
			Request: "GET " + s + "/a HTTP/1.1\r\nHost: x\r\nX-Real-IP: spoofed\r\nTrue-Client-IP: spoofed\r\nCF-Connecting-IP: spoofed\r\nX-Client-IP: spoofed\r\nX-Cluster-Client-IP: spoofed\r\nX-Forwarded-Port: spoofed\r\nX-Forwarded-Prefix: spoofed\r\nX-Forwarded-Ssl: spoofed\r\nX-Forwarded-Scheme: spoofed\r\nX-Original-URL: spoofed\r\nX-Rewrite-URL: spoofed\r\n\r\n",
			Headers: []string{"X-Real-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "X-Client-Ip", "X-Cluster-Client-Ip", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Original-Url", "X-Rewrite-Url"},
			Set:     map[string]string{"X-Real-Ip": "$client"},
			Want:    Want{Reached: 1}},
		{Name: "Upgrade to a protocol not allowed",
			Request: "GET " + s + "/a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x-not-allowed\r\n\r\n",
			Headers: []string{"Upgrade"},
			Want:    Want{Reached: 1}},
		{Name: "/slug/..;/..;/x",
			Request: "GET " + s + "/..;/..;/x HTTP/1.1\r\nHost: x\r\n\r\n",
			Want:    Want{Status: 400}},
		{Name: "/slug/%2e%2e;jsessionid=x/x",
			Request: "GET " + s + "/%2e%2e;jsessionid=x/x HTTP/1.1\r\nHost: x\r\n\r\n",
			Want:    Want{Status: 400}},
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// Check compares a result with a case's Want and returns what is wrong ("" if nothing).
func (c Case) Check(r Result) string {
	var bad []string
	w := c.Want
	if w.Status != 0 && (len(r.Statuses) == 0 || r.Statuses[0] != w.Status) {
		bad = append(bad, "answered "+statuses(r.Statuses)+", want "+itoa(w.Status))
	}
	if n := max(w.Answers, 1); len(r.Statuses) > n {
		bad = append(bad, itoa(len(r.Statuses))+" answers ("+statuses(r.Statuses)+"), want at most "+itoa(n))
	}
	if w.Close && !r.Closed {
		bad = append(bad, "the connection stayed open")
	}
	if len(r.Reached) > w.Reached {
		lines := make([]string, len(r.Reached))
		for i, s := range r.Reached {
			lines[i] = s.Line
		}
		bad = append(bad, itoa(len(r.Reached))+" requests reached the instance ("+strings.Join(lines, "; ")+"), want at most "+itoa(w.Reached))
	}
	for _, s := range r.Reached {
		for _, h := range c.Headers {
			for _, v := range s.Header[h] {
				if strings.Contains(v, "spoofed") || (h == "Upgrade" || h == "Http2-Settings") {
					bad = append(bad, h+": "+v+" reached the instance")
				}
			}
		}
		for h, want := range c.Set {
			if want == "$client" {
				want = "127.0.0.1"
			}
			if got := s.Header[h]; len(got) != 1 || got[0] != want {
				bad = append(bad, h+" reached the instance as "+strings.Join(got, ", ")+", want "+want)
			}
		}
	}
	return strings.Join(bad, "; ")
}

func statuses(s []int) string {
	if len(s) == 0 {
		return "nothing"
	}
	parts := make([]string, len(s))
	for i, c := range s {
		if c < 0 {
			parts[i] = "not HTTP"
		} else {
			parts[i] = itoa(c)
		}
	}
	return strings.Join(parts, ", ")
}

// Summary is a result in a few words, for the comparison table.
func (r Result) Summary(c Case) string {
	parts := []string{}
	if len(r.Statuses) == 0 {
		parts = append(parts, "no answer")
	} else {
		parts = append(parts, statuses(r.Statuses))
	}
	if r.Closed {
		parts = append(parts, "closed")
	} else {
		parts = append(parts, "kept open")
	}
	n := len(r.Reached)
	switch {
	case n == 0:
		parts = append(parts, "nothing forwarded")
	default:
		parts = append(parts, itoa(n)+" forwarded")
	}
	var leaked []string
	for _, s := range r.Reached {
		for _, h := range c.Headers {
			if len(s.Header[h]) > 0 && (strings.Contains(s.Header.Get(h), "spoofed") || h == "Upgrade" || h == "Http2-Settings") {
				leaked = append(leaked, h)
			}
		}
	}
	if len(leaked) > 0 {
		parts = append(parts, "with "+strings.Join(leaked, ", "))
	}
	for _, s := range r.Reached {
		for h := range c.Set {
			if v := s.Header.Get(h); v != "" && !strings.Contains(v, "spoofed") {
				parts = append(parts, h+" set to "+v)
			}
		}
	}
	return strings.Join(parts, "; ")
}

// Instance is a raw TCP instance: it reads each request as a strict origin
// would, records it, and answers with the current case's response.
type Instance struct {
	ln       net.Listener
	mu       sync.Mutex
	seen     []Seen
	response string
}

// NewInstance listens on a loopback port.
func NewInstance() (*Instance, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	in := &Instance{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go in.serve(c)
		}
	}()
	return in, nil
}

// Addr is the instance's host:port.
func (in *Instance) Addr() string { return in.ln.Addr().String() }

// Close stops listening.
func (in *Instance) Close() error { return in.ln.Close() }

// Reset forgets what reached the instance and sets the response for what comes.
func (in *Instance) Reset(response string) {
	in.mu.Lock()
	in.seen, in.response = nil, response
	in.mu.Unlock()
}

// Seen is what reached the instance since Reset.
func (in *Instance) Seen() []Seen {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]Seen(nil), in.seen...)
}

func (in *Instance) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		hdr := textproto.MIMEHeader(req.Header.Clone())
		in.mu.Lock()
		in.seen = append(in.seen, Seen{Line: req.Method + " " + req.RequestURI + " " + req.Proto, Header: hdr, Body: string(body)})
		resp := in.response
		in.mu.Unlock()
		if resp == "" {
			resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
		}
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
	}
}

// Run sends c's bytes to the proxy at addr, reads its answers until it closes
// the connection or is quiet for quiet, and returns them with what reached in.
func Run(addr string, c Case, in *Instance, quiet time.Duration) (Result, error) {
	in.Reset(c.Response)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, c.Request); err != nil {
		return Result{}, err
	}
	var r Result
	br := bufio.NewReader(conn)
	head := strings.HasPrefix(c.Request, "HEAD ")
	for {
		_ = conn.SetReadDeadline(time.Now().Add(quiet))
		if _, err := br.Peek(1); err != nil {
			var ne net.Error
			r.Closed = !(errors.As(err, &ne) && ne.Timeout())
			break
		}
		method := "GET"
		if head {
			method = "HEAD"
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			// Not HTTP (or broken): count it as an answer without a status, and
			// see whether the connection ends.
			r.Statuses = append(r.Statuses, -1)
			_, _ = io.Copy(io.Discard, br)
			r.Closed = true
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.Statuses = append(r.Statuses, resp.StatusCode)
		if resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	// The instance records a request before it answers, so every request
	// whose answer (or whose proxy's 502) came back is in Seen already.
	r.Reached = in.Seen()
	return r, nil
}
