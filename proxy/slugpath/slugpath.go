// Package slugpath splits a request target "/<slug>/rest?query" into its slug,
// path and raw query without decoding anything, and rejects the forms that could
// make the proxy and an instance disagree about which path was asked for.
package slugpath

// Error is a request target the proxy refuses. Status is the HTTP status to answer with.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// The errors Parse returns. They are values, so the hot path allocates nothing.
var (
	ErrNoSlug      = &Error{404, "no slug in the path: request /<slug>/..."}
	ErrNotOrigin   = &Error{400, "the request target must be a path starting with /"}
	ErrEncodedSlug = &Error{400, "the slug segment must not be percent-encoded"}
	ErrBadSlug     = &Error{400, "malformed slug: a slug is a lowercase DNS label (a-z, 0-9 and '-', at most 63 characters)"}
	ErrDotSegment  = &Error{400, "the path must not contain '.' or '..' segments, plain or percent-encoded, also not followed by ';' path parameters ('..;')"}
	ErrBadEscape   = &Error{400, "malformed percent-encoding in the path"}
	ErrControl     = &Error{400, "control characters are not allowed in the path"}
)

// Parse splits an origin-form request target (as in http.Request.RequestURI) into
// the slug, the escaped path (starting with "/<slug>", exactly as sent) and the raw
// query. hasQuery reports whether a '?' was present. The returned strings share
// the input's memory.
func Parse(target string) (slug, path, query string, hasQuery bool, err *Error) {
	if len(target) == 0 || target[0] != '/' {
		return "", "", "", false, ErrNotOrigin
	}
	path = target
	for i := 0; i < len(target); i++ {
		if target[i] == '?' {
			path, query, hasQuery = target[:i], target[i+1:], true
			break
		}
	}
	end := len(path)
	for i := 1; i < len(path); i++ {
		if path[i] == '/' {
			end = i
			break
		}
	}
	slug = path[1:end]
	if slug == "" {
		return "", "", "", false, ErrNoSlug
	}
	if err := checkSlug(slug); err != nil {
		return "", "", "", false, err
	}
	if err := checkRest(path[end:]); err != nil {
		return "", "", "", false, err
	}
	return slug, path, query, hasQuery, nil
}

func checkSlug(s string) *Error {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			return ErrEncodedSlug
		}
	}
	name := s
	for i := 0; i < len(s); i++ {
		if s[i] == ';' {
			name = s[:i]
			break
		}
	}
	if name == "." || name == ".." {
		return ErrDotSegment
	}
	if len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return ErrBadSlug
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return ErrBadSlug
		}
	}
	return nil
}

// checkRest checks the path after the slug segment: valid escapes, no control
// bytes, and no dot segments, which an instance behind a path prefix could resolve
// to a path outside its prefix.
func checkRest(p string) *Error {
	// A segment ends at '/', and also at "%2F", '\\' and "%5C", which some servers
	// decode or treat as '/' before resolving dot segments. Its name ends at ';'
	// (or "%3B"): Tomcat, Jetty and Spring strip path parameters before resolving
	// dot segments, so "..;", ".;" and "..;jsessionid=x" are ".." and "." to them.
	dots, other, params := 0, false, false
	for i := 0; i <= len(p); i++ {
		sep := i == len(p) || p[i] == '/' || p[i] == '\\'
		if !sep && p[i] == '%' {
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return ErrBadEscape
			}
			switch p[i+1 : i+3] {
			case "2e", "2E":
				dots++
			case "2f", "2F", "5c", "5C":
				sep = true
			case "3b", "3B":
				params = true
			default:
				other = true
			}
			i += 2
		} else if !sep {
			switch c := p[i]; {
			case c < 0x20 || c == 0x7f:
				return ErrControl
			case c == ';':
				params = true
			case c == '.':
				dots++
			default:
				other = true
			}
		}
		if params || sep {
			if !other && (dots == 1 || dots == 2) {
				return ErrDotSegment
			}
			if params && !sep {
				// The rest of the segment is parameters: skip to its end (still
				// checking escapes and control bytes).
				other, params = true, false
				continue
			}
			dots, other, params = 0, false, false
		}
	}
	return nil
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}
