package helm_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/slugway/slugway/internal/dockerfile"
)

// rootDockerfile parses the repository's Dockerfile.
func rootDockerfile(t *testing.T) *dockerfile.File {
	t.Helper()
	f, err := dockerfile.ParseFile(filepath.Join(env.Root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The final image holds only the binary, runs it as non-root, and lets the chart pick
// the subcommand.
func TestDockerfileFinalStage(t *testing.T) {
	df := rootDockerfile(t)
	if len(df.Stages) < 2 {
		t.Fatalf("want a multi-stage build (builder, then final), got %d stage(s)", len(df.Stages))
	}
	final := df.Final()
	if !regexp.MustCompile(`^(scratch|\S*distroless/static\S*)$`).MatchString(final.From) {
		t.Errorf("final stage FROM %q: want scratch or a distroless static image", final.From)
	}
	for _, ins := range final.Instructions {
		if ins.Keyword == "CMD" || ins.Keyword == "RUN" {
			t.Errorf("final stage runs %q: the chart passes the subcommand as args, and there is no shell", ins)
		}
	}
	if !regexp.MustCompile(`^[1-9][0-9]*(:[1-9][0-9]*)?$`).MatchString(final.User) {
		t.Errorf("USER %q: want a numeric non-root user, so that runAsNonRoot can verify it", final.User)
	}
	if !slices.Equal(final.Entrypoint, []string{"/slugway"}) {
		t.Errorf(`ENTRYPOINT %q, want ["/slugway"]`, final.Entrypoint)
	}
}

// There is no Docker engine here, so run the Dockerfile's own `go build` command (read
// from the file, so the two cannot drift) and check that the result is a static binary
// that runs on an empty image.
func TestDockerfileBuildIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: building the binary with the image's flags takes minutes on a cold build cache")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the image is linux; the ELF checks need a linux build")
	}
	build := rootDockerfile(t).GoBuild
	i := strings.Index(build, "CGO_ENABLED=0")
	if i < 0 {
		t.Fatalf("the Dockerfile's go build does not set CGO_ENABLED=0 (a cgo binary needs libc, which the final image lacks): %q", build)
	}
	cmdline := build[i:]
	if !strings.Contains(cmdline, "-o /out/slugway") {
		t.Fatalf("go build must write /out/slugway, which the final stage copies: %q", cmdline)
	}
	out := filepath.Join(t.TempDir(), "slugway")
	cmdline = strings.Replace(cmdline, "-o /out/slugway", "-o "+out, 1)

	start := time.Now()
	cmd := exec.Command("sh", "-c", cmdline)
	cmd.Dir = env.Root
	cmd.Env = append(os.Environ(), "TARGETOS=linux", "TARGETARCH="+runtime.GOARCH, "VERSION=v0.0.0-test")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, b)
	}
	t.Logf("%s took %s", cmdline, time.Since(start).Round(time.Millisecond))

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the binary has a PT_INTERP program header: it is dynamically linked")
		}
		if p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a PT_DYNAMIC segment: it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) != 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}
	if f.Section(".symtab") != nil {
		t.Errorf("the binary has a symbol table: -ldflags \"-s -w\" should strip it")
	}
	// It runs, and the version is stamped through -X main.version.
	got, err := exec.Command(out, "version").Output()
	if err != nil || strings.TrimSpace(string(got)) != "v0.0.0-test" {
		t.Errorf("slugway version = %q (%v), want the VERSION build arg", got, err)
	}
	if b, err := exec.Command(out, "controller", "-h").CombinedOutput(); !strings.Contains(string(b), "-webhook-cert-dir") {
		t.Errorf("slugway controller -h (%v):\n%s", err, b)
	}

	// Every flag the chart and config/ pass is one the binary defines: parse them,
	// then stop at -h before anything starts.
	rendered := map[string]string{
		"helm default": helmTemplate(t, release, namespace),
		"helm HA":      helmTemplate(t, release, namespace, "-f", "testdata/ha-values.yaml"),
		"kustomize":    must(t, "kubectl", nil, "kustomize", kustomizeDir()),
	}
	for source, text := range rendered {
		for key, u := range parse(t, text) {
			if u.GetKind() != "Deployment" {
				continue
			}
			d := get[appsv1.Deployment](t, parse(t, text), key)
			for _, c := range d.Spec.Template.Spec.Containers {
				b, _ := exec.Command(out, append(c.Args, "-h")...).CombinedOutput()
				if strings.Contains(string(b), "not defined") || !strings.Contains(string(b), "Usage of slugway "+c.Args[0]) {
					t.Errorf("%s %s: slugway rejects the args %v:\n%s", source, key, c.Args, b)
				}
			}
		}
	}
}
