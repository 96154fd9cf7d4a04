package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// finalStage is what a Dockerfile's last stage says about the image it produces: the
// instructions that matter for a FROM scratch image of static binaries.
type finalStage struct {
	From       string
	User       string
	Entrypoint []string
	Expose     []string // "9311/tcp"
	Copies     []string // destination paths, in order
	// GoBuild is the RUN instruction (of any stage) that runs `go build`.
	GoBuild string
}

// instructions returns a Dockerfile's instructions, continuation lines joined and comments
// dropped.
func instructions(text string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

// parseDockerfile reads the final stage of the Dockerfile at path.
func parseDockerfile(path string) (finalStage, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return finalStage{}, err
	}
	var st finalStage
	for _, ins := range instructions(string(raw)) {
		word, rest, _ := strings.Cut(ins, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(word) {
		case "FROM":
			build := st.GoBuild
			st = finalStage{From: strings.Fields(rest)[0], GoBuild: build}
		case "RUN":
			if strings.Contains(rest, "go build ") {
				st.GoBuild = rest
			}
		case "USER":
			st.User = rest
		case "ENTRYPOINT":
			if !strings.HasPrefix(rest, "[") {
				return st, fmt.Errorf("%s: ENTRYPOINT %s: want the exec form [...], there is no shell", path, rest)
			}
			for _, f := range strings.Split(strings.Trim(rest, "[]"), ",") {
				s, err := strconv.Unquote(strings.TrimSpace(f))
				if err != nil {
					return st, fmt.Errorf("%s: ENTRYPOINT %s: %v", path, rest, err)
				}
				st.Entrypoint = append(st.Entrypoint, s)
			}
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				st.Expose = append(st.Expose, p)
			}
		case "COPY":
			var args []string
			for _, f := range strings.Fields(rest) {
				if !strings.HasPrefix(f, "--") {
					args = append(args, f)
				}
			}
			if len(args) < 2 {
				return st, fmt.Errorf("%s: COPY %s: want a source and a destination", path, rest)
			}
			st.Copies = append(st.Copies, args[len(args)-1])
		}
	}
	if st.From == "" {
		return st, fmt.Errorf("%s: no FROM", path)
	}
	return st, nil
}
