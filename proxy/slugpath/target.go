package slugpath

// ParseTarget is Parse for a request routed by its host name ("<slug>.<domain>",
// package hostroute): the slug is not in the path, so the whole path gets the
// checks Parse applies after the slug segment (valid escapes, no control bytes,
// no dot segments), and its first segment may be anything else, such as a gRPC
// method's "/package.Service". path is the escaped path exactly as sent; the
// strings share the input's memory.
func ParseTarget(target string) (path, query string, hasQuery bool, err *Error) {
	if len(target) == 0 || target[0] != '/' {
		return "", "", false, ErrNotOrigin
	}
	path = target
	for i := 0; i < len(target); i++ {
		if target[i] == '?' {
			path, query, hasQuery = target[:i], target[i+1:], true
			break
		}
	}
	if err := checkRest(path); err != nil {
		return "", "", false, err
	}
	return path, query, hasQuery, nil
}
