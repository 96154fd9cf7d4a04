package dockerfile

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode"
)

const multiStage = `# syntax=docker/dockerfile:1
ARG GO_VERSION=1.26

# ---- build ----
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    # a comment inside a continuation is dropped
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/app .

from scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/app /app
user 65532:65532
EXPOSE 9311 9000/udp
ENTRYPOINT ["/app", "serve", "a,b"]
`

func TestParseMultiStage(t *testing.T) {
	f, err := Parse(multiStage)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Stages) != 2 {
		t.Fatalf("%d stages, want 2", len(f.Stages))
	}
	if got := f.Stages[0].From; got != "golang:${GO_VERSION}" {
		t.Errorf("build stage FROM %q, want the image after --platform", got)
	}
	if got := f.Stages[0].Copies; !reflect.DeepEqual(got, []string{"./"}) {
		t.Errorf("build stage copies %q", got)
	}
	want := Stage{
		From: "scratch",
		Instructions: []Instruction{
			{Line: 12, Keyword: "FROM", Args: "scratch"},
			{Line: 13, Keyword: "COPY", Args: "--from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt"},
			{Line: 14, Keyword: "COPY", Args: "--from=build /out/app /app"},
			{Line: 15, Keyword: "USER", Args: "65532:65532"},
			{Line: 16, Keyword: "EXPOSE", Args: "9311 9000/udp"},
			{Line: 17, Keyword: "ENTRYPOINT", Args: `["/app", "serve", "a,b"]`},
		},
		User:       "65532:65532",
		Entrypoint: []string{"/app", "serve", "a,b"},
		Expose:     []string{"9311/tcp", "9000/udp"},
		Copies:     []string{"/etc/ssl/certs/ca-certificates.crt", "/app"},
	}
	if got := *f.Final(); !reflect.DeepEqual(got, want) {
		t.Errorf("final stage\n got %#v\nwant %#v", got, want)
	}
	if want := `--mount=type=cache,target=/go/pkg/mod  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/app .`; f.GoBuild != want {
		t.Errorf("GoBuild\n got %q\nwant %q", f.GoBuild, want)
	}
	if got := f.Stages[0].Instructions[3]; got.Line != 8 || got.Keyword != "RUN" {
		t.Errorf("the continued RUN is %+v, want it on line 8", got)
	}
}

func TestInstructions(t *testing.T) {
	got := Instructions("\n  # c\nRUN\ta \\\n\\\n  b\nCMD [\"x\"] \\")
	want := []Instruction{
		{Line: 3, Keyword: "RUN", Args: "a   b"},
		{Line: 6, Keyword: "CMD", Args: `["x"]`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v\nwant %#v", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	for text, want := range map[string]string{
		"# nothing\n":                            "no FROM",
		"ARG X=1\n":                              "no FROM",
		"FROM\n":                                 "line 1: FROM without an image",
		"FROM --platform=linux/amd64\n":          "FROM without an image",
		"USER 1\nFROM scratch\n":                 "line 1: USER before the first FROM",
		"FROM scratch\nENTRYPOINT /x\n":          "line 2: ENTRYPOINT /x: want the exec form",
		"FROM scratch\nCOPY onlyone\n":           "a source and a destination",
		"FROM scratch\nCOPY --from=a onlyone\n":  "a source and a destination",
		"FROM scratch\nENTRYPOINT [/x]\n":        "want a JSON array of strings",
		"FROM scratch\nENTRYPOINT []\n":          "no program",
		"FROM scratch\n\nENTRYPOINT [\"/x\", 1]": "line 3: ENTRYPOINT",
	} {
		if _, err := Parse(text); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one containing %q", text, err, want)
		}
	}
}

func TestParseFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "Dockerfile")
	if err := os.WriteFile(p, []byte("FROM scratch\nCOPY x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFile(p); err == nil || !strings.HasPrefix(err.Error(), p+": line 2: COPY x:") {
		t.Errorf("error %v, want it to start with the path and line", err)
	}
	if _, err := ParseFile(filepath.Join(t.TempDir(), "missing")); !os.IsNotExist(err) {
		t.Errorf("missing file: error %v, want not-exist", err)
	}
}

// The repository's own Dockerfiles parse, each into a multi-stage build whose final stage
// copies the binary its ENTRYPOINT runs.
func TestRepositoryDockerfiles(t *testing.T) {
	paths, err := filepath.Glob("../../examples/*/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, "../../Dockerfile")
	if len(paths) < 2 {
		t.Fatalf("found %v: want the root Dockerfile and the examples'", paths)
	}
	for _, p := range paths {
		f, err := ParseFile(p)
		if err != nil {
			t.Error(err)
			continue
		}
		final := f.Final()
		if len(f.Stages) < 2 || final.From != "scratch" || len(final.Entrypoint) == 0 || f.GoBuild == "" {
			t.Errorf("%s: %d stages, final %+v, go build %q", p, len(f.Stages), final, f.GoBuild)
			continue
		}
		if final.Copies[len(final.Copies)-1] != final.Entrypoint[0] {
			t.Errorf("%s: the last COPY is %s, the ENTRYPOINT runs %s", p, final.Copies[len(final.Copies)-1], final.Entrypoint[0])
		}
	}
}

// FuzzParse: Instructions and Parse never panic. Every instruction has a keyword in upper
// case without spaces and trimmed arguments, in increasing line order, and written back
// one a line it reads the same (but for a continuation cut off by the end of the file). Whatever Parse accepts has stages that each start with
// their FROM, whose From is one of that FROM's arguments. Seeds are the repository's
// Dockerfiles and the cases above; run with `go test -fuzz=FuzzParse ./internal/dockerfile`.
func FuzzParse(f *testing.F) {
	paths, _ := filepath.Glob("../../examples/*/Dockerfile")
	for _, p := range append(paths, "../../Dockerfile") {
		raw, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(raw))
	}
	for _, s := range []string{multiStage, "FROM\n", "RUN a \\\n\\\n", "FROM scratch\nENTRYPOINT [\"/x\"", "USER 1\n", "from a as b\r\nexpose 80\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ins := Instructions(text)
		var lines []string
		last := 0
		for _, i := range ins {
			if i.Keyword == "" || strings.IndexFunc(i.Keyword, unicode.IsSpace) >= 0 || i.Keyword != strings.ToUpper(i.Keyword) {
				t.Fatalf("keyword %q: want a non-empty upper-case word", i.Keyword)
			}
			if i.Args != strings.TrimSpace(i.Args) || strings.Contains(i.Args, "\n") {
				t.Fatalf("args %q are not one trimmed line", i.Args)
			}
			if i.Line <= last {
				t.Fatalf("instruction %q on line %d after one on line %d", i, i.Line, last)
			}
			last = i.Line
			lines = append(lines, i.String())
		}
		// Only a continuation cut off by the end of the file can end in a backslash, and
		// written back it would continue again: leave it out of the round trip.
		for n, l := range lines {
			if strings.HasSuffix(l, "\\") {
				if n != len(lines)-1 {
					t.Fatalf("instruction %d of %d, %q, ends in a backslash", n+1, len(lines), l)
				}
				lines, ins = lines[:n], ins[:n]
			}
		}
		again := Instructions(strings.Join(lines, "\n"))
		if len(again) != len(ins) {
			t.Fatalf("written back one a line, %d instructions read as %d:\n%s", len(ins), len(again), strings.Join(lines, "\n"))
		}
		for n := range ins {
			if again[n].Keyword != ins[n].Keyword || again[n].Args != ins[n].Args {
				t.Fatalf("written back, %q reads as %q", ins[n], again[n])
			}
		}

		file, err := Parse(text)
		if err != nil {
			if file != nil {
				t.Fatalf("an error (%v) and a file", err)
			}
			return
		}
		if len(file.Stages) == 0 {
			t.Fatal("accepted with no stage")
		}
		for _, st := range file.Stages {
			if len(st.Instructions) == 0 || st.Instructions[0].Keyword != "FROM" {
				t.Fatalf("stage %+v does not start with FROM", st)
			}
			if st.From == "" || !strings.Contains(st.Instructions[0].Args, st.From) {
				t.Fatalf("stage From %q is not in %q", st.From, st.Instructions[0])
			}
			for _, e := range st.Expose {
				if !strings.Contains(e, "/") {
					t.Fatalf("port %q has no protocol", e)
				}
			}
		}
		if file.GoBuild != "" && !strings.Contains(file.GoBuild, "go build ") {
			t.Fatalf("GoBuild %q runs no go build", file.GoBuild)
		}
	})
}
