// Package dockerfile reads the parts of a Dockerfile that slugway's image tooling and
// packaging tests rely on: its build stages and, for each, the instructions that describe
// a FROM scratch image of static binaries (USER, ENTRYPOINT, EXPOSE, COPY), plus the RUN
// that runs `go build`. hack/image builds images from what it reads; test/helm checks the
// root Dockerfile with it. It is not a full Dockerfile parser: no heredocs, no escape
// directive, no variable expansion.
package dockerfile

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"unicode"
)

// Instruction is one instruction: its continuation lines joined, comments dropped.
type Instruction struct {
	Line    int    // line number of its first line, from 1
	Keyword string // in upper case: FROM, RUN, COPY, ...
	Args    string // what follows the keyword, trimmed
}

// String is the instruction as one line, e.g. "COPY --from=build /out/x /x".
func (i Instruction) String() string {
	if i.Args == "" {
		return i.Keyword
	}
	return i.Keyword + " " + i.Args
}

// Stage is one build stage: a FROM and what follows it up to the next FROM.
type Stage struct {
	// From is the base image, FROM's first argument after any --flags ("scratch").
	From string
	// Instructions are the stage's instructions, its FROM first.
	Instructions []Instruction
	User         string
	Entrypoint   []string // from the exec form, the only one accepted (there is no shell)
	Expose       []string // "9311/tcp": a port without a protocol is tcp
	Copies       []string // COPY destinations, in order
}

// File is a parsed Dockerfile.
type File struct {
	Stages []Stage // at least one
	// GoBuild is the arguments of the last RUN, of any stage, that runs `go build`.
	GoBuild string
}

// Final is the last stage: the image the Dockerfile produces.
func (f *File) Final() *Stage { return &f.Stages[len(f.Stages)-1] }

// Instructions splits text into instructions: blank and comment lines are dropped (also
// inside a continuation, as Docker does), and a line ending in a backslash continues on
// the next.
func Instructions(text string) []Instruction {
	var out []Instruction
	var cur strings.Builder
	start := 0
	flush := func() {
		word, rest := strings.TrimSpace(cur.String()), ""
		cur.Reset()
		if word == "" { // only backslashes
			return
		}
		if i := strings.IndexFunc(word, unicode.IsSpace); i >= 0 {
			word, rest = word[:i], word[i:]
		}
		out = append(out, Instruction{Line: start, Keyword: strings.ToUpper(word), Args: strings.TrimSpace(rest)})
	}
	for n, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = n + 1
		}
		if body, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush() // a continuation at the end of the file ends there
	return out
}

// Parse reads a Dockerfile's stages. Its errors name the line and what to write instead.
func Parse(text string) (*File, error) {
	f := &File{}
	for _, ins := range Instructions(text) {
		if ins.Keyword != "FROM" && len(f.Stages) == 0 {
			if ins.Keyword == "ARG" {
				continue
			}
			return nil, fmt.Errorf("line %d: %s before the first FROM: only ARG may come before it", ins.Line, ins.Keyword)
		}
		if ins.Keyword == "FROM" {
			from := ""
			for _, a := range strings.Fields(ins.Args) {
				if !strings.HasPrefix(a, "--") {
					from = a
					break
				}
			}
			if from == "" {
				return nil, fmt.Errorf("line %d: FROM without an image: want FROM <image> [AS <name>]", ins.Line)
			}
			f.Stages = append(f.Stages, Stage{From: from})
		}
		st := &f.Stages[len(f.Stages)-1]
		st.Instructions = append(st.Instructions, ins)
		switch ins.Keyword {
		case "RUN":
			if strings.Contains(ins.Args, "go build ") {
				f.GoBuild = ins.Args
			}
		case "USER":
			st.User = ins.Args
		case "ENTRYPOINT":
			if !strings.HasPrefix(ins.Args, "[") {
				return nil, fmt.Errorf("line %d: ENTRYPOINT %s: want the exec form [\"/binary\", ...], there is no shell", ins.Line, ins.Args)
			}
			var argv []string
			if err := json.Unmarshal([]byte(ins.Args), &argv); err != nil || len(argv) == 0 {
				if err == nil {
					err = fmt.Errorf("no program")
				}
				return nil, fmt.Errorf("line %d: ENTRYPOINT %s: want a JSON array of strings, such as [\"/binary\"]: %v", ins.Line, ins.Args, err)
			}
			st.Entrypoint = argv
		case "EXPOSE":
			for _, p := range strings.Fields(ins.Args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				st.Expose = append(st.Expose, p)
			}
		case "COPY":
			var args []string
			for _, a := range strings.Fields(ins.Args) {
				if !strings.HasPrefix(a, "--") {
					args = append(args, a)
				}
			}
			if len(args) < 2 {
				return nil, fmt.Errorf("line %d: COPY %s: want a source and a destination", ins.Line, ins.Args)
			}
			st.Copies = append(st.Copies, args[len(args)-1])
		}
	}
	if len(f.Stages) == 0 {
		return nil, fmt.Errorf("no FROM: a Dockerfile starts its first stage with FROM <image>")
	}
	return f, nil
}

// ParseFile parses the Dockerfile at path; its errors start with the path.
func ParseFile(path string) (*File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(string(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}
