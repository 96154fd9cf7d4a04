package framing

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/slugway/slugway/proxy/wire"
)

// TLSListener terminates TLS itself, so that HTTP/1.x over TLS can be checked
// like plaintext: a connection that negotiated h2 (ALPN) is handed to the
// server as the *tls.Conn net/http needs for HTTP/2; any other comes wrapped
// in a Conn. net/http then does not see the TLS state of those (r.TLS is
// nil): serve them with ConnContext, and read it back with TLSState.
type TLSListener struct {
	ln      net.Listener
	cfg     *tls.Config
	maxHead int
	timeout time.Duration

	ch   chan net.Conn
	done chan struct{}
	once sync.Once

	onRefuse func(*wire.RequestError)
}

// NewTLSListener starts accepting on ln. cfg must list "h2" and "http/1.1" in
// NextProtos for HTTP/2. Handshakes run concurrently, each bounded by
// handshakeTimeout, so a client that stalls its handshake holds up no other.
// onRefuse (may be nil) is the Conns' OnRefuse.
func NewTLSListener(ln net.Listener, cfg *tls.Config, maxHead int, handshakeTimeout time.Duration, onRefuse func(*wire.RequestError)) *TLSListener {
	l := &TLSListener{ln: ln, cfg: cfg, maxHead: maxHead, timeout: handshakeTimeout, onRefuse: onRefuse, ch: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *TLSListener) acceptLoop() {
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			l.Close()
			return
		}
		backoff = 0
		go l.handshake(c)
	}
}

func (l *TLSListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.cfg)
	if l.timeout > 0 {
		_ = c.SetDeadline(time.Now().Add(l.timeout))
	}
	if err := tc.Handshake(); err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	var out net.Conn = tc
	if st := tc.ConnectionState(); st.NegotiatedProtocol != "h2" {
		fc := NewConn(tc, l.maxHead)
		fc.tls, fc.OnRefuse = &st, l.onRefuse
		out = fc
	}
	select {
	case l.ch <- out:
	case <-l.done:
		c.Close()
	}
}

// Accept returns the next connection whose handshake succeeded.
func (l *TLSListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (l *TLSListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
	})
	return err
}

// Addr is the listener's address.
func (l *TLSListener) Addr() net.Addr { return l.ln.Addr() }

type tlsKey struct{}

// ConnContext is for http.Server.ConnContext: it keeps the TLS state of a Conn
// that TLSListener terminated, for TLSState.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*Conn); ok && fc.tls != nil {
		return context.WithValue(ctx, tlsKey{}, fc.tls)
	}
	return ctx
}

// TLSState is the TLS state of the connection a request came on: r.TLS, or,
// for a Conn that TLSListener terminated, what ConnContext kept. nil: plaintext.
func TLSState(ctx context.Context, rTLS *tls.ConnectionState) *tls.ConnectionState {
	if rTLS != nil {
		return rTLS
	}
	st, _ := ctx.Value(tlsKey{}).(*tls.ConnectionState)
	return st
}
