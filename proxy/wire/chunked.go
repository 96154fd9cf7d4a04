package wire

import "errors"

// ErrChunked is a malformed chunked body.
var ErrChunked = errors.New("malformed chunked body")

// Chunked follows a chunked body as it streams by, so that the proxy can relay
// the bytes unchanged and still know where the body ends (and the connection
// can carry the next response). The zero value is ready for a new body.
type Chunked struct {
	state   chunkState
	size    uint64 // data bytes left in the current chunk
	digits  int
	lineLen int // bytes of the current extension or trailer line
}

type chunkState uint8

const (
	csSize        chunkState = iota // hex digits of a chunk size
	csSizeWS                        // whitespace after the size
	csExt                           // chunk extensions, up to CR
	csSizeLF                        // LF after the size line
	csData                          // chunk data
	csDataCR                        // CR after chunk data
	csDataLF                        // LF after chunk data
	csTrailer                       // start of a trailer line (or the final CRLF)
	csTrailerLine                   // inside a trailer field line
	csTrailerLF                     // LF after a trailer line
	csEndLF                         // LF of the final blank line
	csDone
)

// maxLine bounds chunk extensions and trailer lines.
const maxLine = 4096

// Feed consumes the next bytes of the stream. It returns how many of p belong
// to the body (all of p unless the body ended inside it) and whether the body
// is complete.
func (c *Chunked) Feed(p []byte) (n int, done bool, err error) {
	for n < len(p) {
		b := p[n]
		switch c.state {
		case csSize:
			switch {
			case isHex(b):
				if c.digits == 16 {
					return n, false, ErrChunked
				}
				c.size = c.size<<4 | uint64(unhex(b))
				c.digits++
			case c.digits > 0 && b == ';':
				c.state, c.lineLen = csExt, 0
			case c.digits > 0 && (b == ' ' || b == '\t'):
				c.state = csSizeWS
			case c.digits > 0 && b == '\r':
				c.state = csSizeLF
			default:
				return n, false, ErrChunked
			}
		case csSizeWS: // optional whitespace, then extensions or the line's end
			switch b {
			case ' ', '\t':
			case ';':
				c.state, c.lineLen = csExt, 0
			case '\r':
				c.state = csSizeLF
			default:
				return n, false, ErrChunked
			}
		case csExt:
			if b == '\r' {
				c.state = csSizeLF
			} else if b == '\n' || c.lineLen >= maxLine {
				return n, false, ErrChunked
			}
			c.lineLen++
		case csSizeLF:
			if b != '\n' {
				return n, false, ErrChunked
			}
			if c.size == 0 {
				c.state = csTrailer
			} else {
				c.state = csData
			}
		case csData:
			m := uint64(len(p) - n)
			if m > c.size {
				m = c.size
			}
			n += int(m)
			c.size -= m
			if c.size == 0 {
				c.state = csDataCR
			}
			continue
		case csDataCR:
			if b != '\r' {
				return n, false, ErrChunked
			}
			c.state = csDataLF
		case csDataLF:
			if b != '\n' {
				return n, false, ErrChunked
			}
			c.state, c.digits = csSize, 0
		case csTrailer:
			if b == '\r' {
				c.state = csEndLF
			} else if b == '\n' {
				return n, false, ErrChunked
			} else {
				c.state, c.lineLen = csTrailerLine, 1
			}
		case csTrailerLine:
			if b == '\r' {
				c.state = csTrailerLF
			} else if b == '\n' || c.lineLen >= maxLine {
				return n, false, ErrChunked
			}
			c.lineLen++
		case csTrailerLF:
			if b != '\n' {
				return n, false, ErrChunked
			}
			c.state = csTrailer
		case csEndLF:
			if b != '\n' {
				return n, false, ErrChunked
			}
			c.state = csDone
			return n + 1, true, nil
		case csDone:
			return n, true, nil
		}
		n++
	}
	return n, c.state == csDone, nil
}

func isHex(b byte) bool { return isDigit(b) || ('a' <= b && b <= 'f') || ('A' <= b && b <= 'F') }

func unhex(b byte) byte {
	switch {
	case isDigit(b):
		return b - '0'
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10
	}
	return b - 'A' + 10
}
