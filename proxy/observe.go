package proxy

import (
	"net"
	"strings"
	"time"
)

// observe is the one place a finished request is observed, whichever server
// parsed it: its slug's request counter and duration histogram, and the access
// log line. It runs after the response's last byte was handed to the client's
// connection. It sets req.end.
func (h *Handler) observe(req *request, sm *slugMetrics, code int, abort bool) {
	req.end = time.Now()
	d := req.end.Sub(req.start)
	sm.count(code)
	sm.duration.Observe(d.Seconds())
	h.stats.Observe(sm.slug, code, d)
	if h.opts.AccessLog { // copies: the front end's strings point into its read buffer
		kv := []any{"slug", sm.slug, "method", strings.Clone(req.method), "target", strings.Clone(req.rawTarget), "proto", req.proto,
			"status", code, "duration", d, "remote", req.remote, "aborted", abort}
		if id := req.trace.traceID(); id != "" {
			kv = append(kv, "trace_id", id)
		}
		h.log.Info("access", kv...)
	}
	h.endTrace(req, code, abort)
}

func remoteIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
