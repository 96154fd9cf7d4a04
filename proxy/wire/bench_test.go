package wire_test

import (
	"strings"
	"testing"

	"github.com/slugway/slugway/proxy/wire"
)

// The parsers' cost on typical heads (0 allocations: see the Allocs tests).
func BenchmarkParseRequest(b *testing.B) {
	buf := []byte(browserGET)
	var r wire.Request
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := wire.ParseRequest(buf, maxHead, &r); err != nil || r.Unusual != "" {
			b.Fatal(err, r.Unusual)
		}
	}
}

func BenchmarkParseResponse(b *testing.B) {
	buf := []byte(typicalResponse)
	var r wire.Response
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := wire.ParseResponse(buf, maxHead, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// EqualFold is kept instead of strings.EqualFold (httpguts has no exported
// ASCII-only fold): strings.EqualFold folds Unicode, so "\u212a" (Kelvin)
// equals "k" there, which no HTTP token comparison may do, and it is slower on
// the proxy's per-field name comparisons. This benchmark is the measurement
// behind keeping it; see docs/security.md.
func BenchmarkEqualFold(b *testing.B) {
	names := []string{"Host", "User-Agent", "Accept", "Accept-Language", "Accept-Encoding", "Referer", "Cookie", "Connection"}
	for _, bc := range []struct {
		name string
		fold func(a, b string) bool
	}{{"wire", wire.EqualFold}, {"strings", strings.EqualFold}} {
		b.Run(bc.name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				for _, name := range names {
					if bc.fold(name, "content-length") || bc.fold(name, "connection") || bc.fold(name, "transfer-encoding") {
						n++
					}
				}
			}
			if n == 0 {
				b.Fatal("no match")
			}
		})
	}
}
