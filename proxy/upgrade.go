package proxy

import (
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/slugway/slugway/proxy/wire"
)

// upgradeType returns the protocol an HTTP/1.1 request asks to upgrade to, or "".
func upgradeType(r *http.Request) string {
	if r.ProtoMajor != 1 {
		return ""
	}
	up := r.Header["Upgrade"]
	if len(up) == 0 || !wire.HasToken(r.Header["Connection"], "upgrade") {
		return ""
	}
	return up[0]
}

var connUpgrade = []string{"Upgrade"}

// allowedUpgrade returns up if --allowed-upgrades names it (h2c never: an h2c
// upgrade would hand the instance a connection the proxy cannot follow), else
// "": the request is forwarded as a plain one, without Upgrade (hop-by-hop,
// so dropped with Connection's other tokens), which RFC 9110 7.8 lets a
// server do; the instance answers it as the plain request it also is.
func (h *Handler) allowedUpgrade(up string) string {
	if up == "" || strings.EqualFold(up, "h2c") {
		return ""
	}
	for _, a := range h.opts.AllowedUpgrades {
		if strings.EqualFold(a, up) {
			return up
		}
	}
	return ""
}

// switchProtocols completes an upgrade (WebSocket): it hands the client's
// connection over and copies bytes both ways until either side closes.
func (h *Handler) switchProtocols(hr *httpResponder, resp *http.Response, upgrade string) int {
	back, ok := resp.Body.(io.ReadWriteCloser)
	if !ok || !strings.EqualFold(resp.Header.Get("Upgrade"), upgrade) {
		resp.Body.Close()
		return writeError(hr, http.StatusBadGateway, "upstream switched to an unexpected protocol", "")
	}
	defer back.Close()
	conn, brw, err := http.NewResponseController(hr.w).Hijack()
	if err != nil {
		return writeError(hr, http.StatusBadGateway, "cannot upgrade this connection", "")
	}
	defer conn.Close()
	h.hijacked.Store(conn, struct{}{})
	defer h.hijacked.Delete(conn)

	hdr := make(http.Header, len(resp.Header))
	copyResponseHeader(hdr, resp.Header)
	hdr["Connection"] = connUpgrade
	hdr["Upgrade"] = []string{upgrade}
	if _, err := brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n"); err != nil {
		return http.StatusSwitchingProtocols
	}
	if err := hdr.Write(brw); err != nil {
		return http.StatusSwitchingProtocols
	}
	if _, err := brw.WriteString("\r\n"); err != nil || brw.Flush() != nil {
		return http.StatusSwitchingProtocols
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, back); done <- struct{}{} }()
	go func() { _, _ = io.Copy(back, brw.Reader); done <- struct{}{} }()
	<-done // either side closed: close both, which ends the other copy
	conn.Close()
	back.Close()
	<-done
	return http.StatusSwitchingProtocols
}

// closeUpgraded closes upgraded (WebSocket) connections, which Shutdown does not track.
func (h *Handler) closeUpgraded() {
	h.hijacked.Range(func(k, _ any) bool {
		k.(net.Conn).Close()
		return true
	})
}
