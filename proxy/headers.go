package proxy

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/slugway/slugway/proxy/wire"
)

// The header policy, both ways, written once: which request fields go to an
// instance and which X-Forwarded-* fields are added (rewriteRequestHeader, with
// a sink for the upstream client's bytes and one for the Transport's map), and
// which response fields come back (dropResponseField).

// fieldKind classifies the header fields the proxy treats specially.
type fieldKind uint8

const (
	fieldOther      fieldKind = iota
	fieldHop                  // hop-by-hop (RFC 9110 7.6.1): for one connection only
	fieldConnection           // hop-by-hop, and names more hop-by-hop fields
	fieldTE                   // hop-by-hop; "trailers" is passed on
	fieldTrailer              // hop-by-hop; kept when a chunked body is relayed as it came
	fieldHost
	fieldContentLength
	fieldUserAgent
	fieldXFF
	fieldXFP
	fieldXFH
	fieldForwarded
	fieldExpect
	fieldIdempotencyKey
	fieldDate
	fieldXRealIP  // replaced by the peer's address unless it is a trusted proxy
	fieldClientID // client-identity and path-override fields: dropped unless from a trusted proxy
)

// hop reports whether fields of this kind are for one connection only.
func (k fieldKind) hop() bool {
	return k == fieldHop || k == fieldConnection || k == fieldTE || k == fieldTrailer
}

// specialFields are the header fields the proxy treats specially, by kind.
var specialFields = [...]struct {
	name string
	kind fieldKind
}{
	{"connection", fieldConnection}, {"proxy-connection", fieldHop}, {"keep-alive", fieldHop},
	{"proxy-authenticate", fieldHop}, {"proxy-authorization", fieldHop}, {"te", fieldTE},
	{"trailer", fieldTrailer}, {"transfer-encoding", fieldHop}, {"upgrade", fieldHop},
	{"host", fieldHost}, {"content-length", fieldContentLength}, {"user-agent", fieldUserAgent},
	{"x-forwarded-for", fieldXFF}, {"x-forwarded-proto", fieldXFP}, {"x-forwarded-host", fieldXFH},
	{"forwarded", fieldForwarded}, {"expect", fieldExpect}, {"idempotency-key", fieldIdempotencyKey},
	{"date", fieldDate},
	// HTTP2-Settings belongs to an h2c upgrade, which is never forwarded
	// (RFC 9113 3.2 makes it hop-by-hop).
	{"http2-settings", fieldHop},
	// What some instances or frameworks read as the client's address, scheme,
	// port or path (docs/security.md, "Client-identity and path-override
	// headers"): a client must not be able to set them.
	{"x-real-ip", fieldXRealIP},
	{"true-client-ip", fieldClientID}, {"cf-connecting-ip", fieldClientID}, {"x-client-ip", fieldClientID},
	{"x-cluster-client-ip", fieldClientID}, {"x-forwarded-port", fieldClientID}, {"x-forwarded-prefix", fieldClientID},
	{"x-forwarded-ssl", fieldClientID}, {"x-forwarded-scheme", fieldClientID}, {"x-original-url", fieldClientID},
	{"x-rewrite-url", fieldClientID},
}

// specialByLen holds specialFields by name length: a lookup compares only
// names of the field's length (most fields have none, or one or two).
var specialByLen = func() (t [24][]int) {
	for i, f := range specialFields {
		t[len(f.name)] = append(t[len(f.name)], i)
	}
	return t
}()

// fieldKindOf classifies a header field name, case-insensitively.
func fieldKindOf(k string) fieldKind {
	if len(k) >= len(specialByLen) {
		return fieldOther
	}
	for _, i := range specialByLen[len(k)] {
		if wire.EqualFold(k, specialFields[i].name) {
			return specialFields[i].kind
		}
	}
	return fieldOther
}

// headerSink receives the upstream request's header fields.
type headerSink interface {
	field(name, value string)
	// forwardedFor adds X-Forwarded-For: the prior values (kept from a
	// trusted proxy, else nil), then the peer's address.
	forwardedFor(prior []string, ip string)
}

// rewriteRequestHeader is the request-header policy. It passes the client's
// fields to out, less hop-by-hop ones and those its Connection field names, and
// less the X-Forwarded-*, Forwarded, X-Real-IP and other client-identity and
// path-override fields (fieldClientID) unless the peer is a trusted proxy;
// then it adds TE: trailers (when asked for), the upgrade's fields,
// X-Forwarded-For/-Proto/-Host and X-Real-IP (the peer's address). Host, Content-Length and Transfer-Encoding are
// the caller's. Field names are matched case-insensitively, so fields may come
// canonicalized (net/http) or as sent (the front end).
func (h *Handler) rewriteRequestHeader(req *request, out headerSink) error {
	trusted := h.trusted(req.remoteIP)
	keepProto := trusted && req.hasXFP
	keepHost := trusted && req.hasXFH
	keepRealIP := trusted && req.hasXRealIP
	ua := false
	for _, f := range req.fields {
		k, v := f.Name, f.Value
		switch kind := fieldKindOf(k); kind {
		case fieldHost, fieldContentLength, fieldXFF:
			continue
		case fieldUserAgent:
			first := !ua
			ua = true
			if !first || v == "" {
				continue // the first one, if not empty, as the Transport sends it
			}
		case fieldXFP:
			if !keepProto {
				continue
			}
		case fieldXFH:
			if !keepHost {
				continue
			}
		case fieldForwarded, fieldClientID:
			if !trusted {
				continue
			}
		case fieldXRealIP:
			if !keepRealIP {
				continue
			}
		default:
			if kind.hop() {
				continue
			}
		}
		if len(req.conn) > 0 && wire.HasToken(req.conn, k) {
			continue
		}
		if req.trace != nil && isTraceField(k) {
			continue // replaced by the proxy span's below
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("invalid request header field name %q", k)
		}
		out.field(k, v)
	}
	if req.trace != nil {
		req.trace.traceFields(out)
	}
	if wire.HasToken(req.te, "trailers") {
		out.field("Te", "trailers")
	}
	if req.upgrade != "" {
		out.field("Connection", "Upgrade")
		out.field("Upgrade", req.upgrade)
	}
	var prior []string
	if trusted {
		prior = req.xff
	}
	out.forwardedFor(prior, req.remoteIP)
	if !keepProto {
		if req.tls {
			out.field("X-Forwarded-Proto", "https")
		} else {
			out.field("X-Forwarded-Proto", "http")
		}
	}
	if !keepHost {
		out.field("X-Forwarded-Host", req.host)
	}
	if !keepRealIP {
		out.field("X-Real-Ip", req.remoteIP)
	}
	return nil
}

// wireHeader writes the fields into the upstream connection's buffer, no map
// built. It is the connection's *bufio.Writer itself (converting it allocates nothing).
type wireHeader bufio.Writer

func (w *wireHeader) field(k, v string) {
	bw := (*bufio.Writer)(w)
	bw.WriteString(k)
	bw.WriteString(": ")
	writeValue(bw, v)
	bw.WriteString("\r\n")
}

func (w *wireHeader) forwardedFor(prior []string, ip string) {
	bw := (*bufio.Writer)(w)
	bw.WriteString("X-Forwarded-For: ")
	for _, v := range prior {
		writeValue(bw, v)
		bw.WriteString(", ")
	}
	bw.WriteString(ip)
	bw.WriteString("\r\n")
}

// writeValue writes a header value with CR and LF turned into spaces, as
// http.Header.Write does (the servers reject them already; this is a second fence).
func writeValue(bw *bufio.Writer, v string) {
	if strings.IndexByte(v, '\r') < 0 && strings.IndexByte(v, '\n') < 0 {
		bw.WriteString(v)
		return
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		bw.WriteByte(c)
	}
}

// mapHeader builds the header of a request for the Transport.
type mapHeader http.Header

func (m mapHeader) field(k, v string) { m[k] = append(m[k], v) }

func (m mapHeader) forwardedFor(prior []string, ip string) {
	if len(prior) > 0 {
		m["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
		return
	}
	m["X-Forwarded-For"] = []string{ip}
}

// outHeader is the upstream request's header as a map, for the Transport
// (upgrades, h2c and https instances). A request without User-Agent keeps none,
// rather than getting Go's default.
func (h *Handler) outHeader(req *request) (http.Header, error) {
	out := make(http.Header, len(req.fields)+4)
	if err := h.rewriteRequestHeader(req, mapHeader(out)); err != nil {
		return nil, err
	}
	if _, ok := out["User-Agent"]; !ok {
		out["User-Agent"] = emptyUA
	}
	return out, nil
}

var emptyUA = []string{""}

// dropResponseField is the response-header policy: it reports whether a field
// of an instance's response is not relayed to the client. Hop-by-hop fields and
// those the response's Connection names are dropped; relaying a chunked body as
// it came (rawChunked) keeps Trailer, and a chunked response loses any
// Content-Length.
func dropResponseField(name string, conn []string, chunked, rawChunked bool) bool {
	switch kind := fieldKindOf(name); {
	case kind == fieldTrailer:
		if !rawChunked {
			return true
		}
	case kind.hop():
		return true
	case kind == fieldContentLength && chunked:
		return true
	}
	return len(conn) > 0 && wire.HasToken(conn, name)
}

// copyResponseHeader copies a Transport response's header, by the policy above.
func copyResponseHeader(dst, src http.Header) {
	conn := src["Connection"]
	for k, vv := range src {
		if !dropResponseField(k, conn, false, false) {
			dst[k] = vv
		}
	}
}
