package main

import (
	"archive/tar"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/slugway/slugway/internal/dockerfile"
)

// The tests run in hack/image; the repository root is two levels up.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func buildSpec(t *testing.T, root string, s spec) v1.Image {
	t.Helper()
	img, err := build(root, s)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// imageDescribes checks that img is the image the Dockerfile's final stage describes: its
// entrypoint, user, ports and files (what COPY puts there and nothing else, so no shell).
func imageDescribes(t *testing.T, img v1.Image, st *dockerfile.Stage) {
	t.Helper()
	if st.From != "scratch" {
		t.Fatalf("final stage FROM %s: hack/image builds FROM scratch images only", st.From)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cf.Config.Entrypoint, st.Entrypoint) {
		t.Errorf("entrypoint %q, the Dockerfile says %q", cf.Config.Entrypoint, st.Entrypoint)
	}
	if cf.Config.User != st.User {
		t.Errorf("user %q, the Dockerfile says %q", cf.Config.User, st.User)
	}
	var ports []string
	for p := range cf.Config.ExposedPorts {
		ports = append(ports, p)
	}
	sort.Strings(ports)
	want := append([]string(nil), st.Expose...)
	sort.Strings(want)
	if strings.Join(ports, ",") != strings.Join(want, ",") {
		t.Errorf("exposed ports %v, the Dockerfile says %v", ports, want)
	}
	if len(cf.Config.Cmd) != 0 {
		t.Errorf("cmd %q: the Dockerfile has none (the chart passes the subcommand as args)", cf.Config.Cmd)
	}
	files, err := imageFiles(img)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for p, h := range files {
		if h.Typeflag == tar.TypeReg {
			got = append(got, p)
			if h.Uid != 0 || h.Gid != 0 {
				t.Errorf("%s is owned by %d:%d; COPY without --chown gives root", p, h.Uid, h.Gid)
			}
		} else if h.Typeflag != tar.TypeDir {
			t.Errorf("%s: unexpected entry type %q (only files and directories)", p, h.Typeflag)
		}
	}
	sort.Strings(got)
	wantFiles := append([]string(nil), st.Copies...)
	sort.Strings(wantFiles)
	if !reflect.DeepEqual(got, wantFiles) {
		t.Errorf("files %v, the Dockerfile copies %v", got, wantFiles)
	}
	for _, sh := range []string{"/bin/sh", "/bin", "/usr/bin/env"} {
		if _, ok := files[sh]; ok {
			t.Errorf("the image has %s; it must have no shell", sh)
		}
	}
	if h, ok := files[st.Entrypoint[0]]; !ok || h.Mode&0o111 == 0 {
		t.Errorf("entrypoint %s is not an executable file of the image", st.Entrypoint[0])
	}
}

// The image hack/image builds and the one the Dockerfile builds are the same image.
func TestSlugwayImageMatchesDockerfile(t *testing.T) {
	root := repoRoot(t)
	df, err := dockerfile.ParseFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	s := slugwaySpec("v0.0.0-test")
	// The binary is built with the Dockerfile's flags.
	m := ldflagsRE.FindStringSubmatch(df.GoBuild)
	if m == nil {
		t.Fatalf("no -ldflags in the Dockerfile's go build: %q", df.GoBuild)
	}
	if want := strings.ReplaceAll(m[1], "${VERSION}", "v0.0.0-test"); want != s.LDFlags {
		t.Errorf("hack/image builds with -ldflags %q, the Dockerfile with %q", s.LDFlags, want)
	}
	for _, f := range []string{"CGO_ENABLED=0", "-trimpath"} {
		if !strings.Contains(df.GoBuild, f) {
			t.Errorf("the Dockerfile's go build lacks %s, which hack/image uses", f)
		}
	}
	imageDescribes(t, buildSpec(t, root, s), df.Final())
}

// Each example image matches its Dockerfile too (the build reads the Dockerfile, so this
// checks the reading as much as the image).
func TestExampleImagesMatchTheirDockerfiles(t *testing.T) {
	root := repoRoot(t)
	specs, err := exampleSpecs(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	if !strings.Contains(","+strings.Join(names, ",")+",", ",skeleton-svc,") {
		t.Fatalf("example images %v: want skeleton-svc among them", names)
	}
	for _, s := range specs {
		t.Run(s.Name, func(t *testing.T) {
			df, err := dockerfile.ParseFile(filepath.Join(root, "examples", s.Name, "Dockerfile"))
			if err != nil {
				t.Fatal(err)
			}
			imageDescribes(t, buildSpec(t, root, s), df.Final())
		})
	}
}

// Building twice gives the same digest, and so does writing and reading the archive.
func TestBuildIsReproducible(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	var digests []string
	for i := range 2 {
		out := filepath.Join(dir, string(rune('a'+i)))
		if err := run(root, out, "repro", "v0.0.0-repro", "slugway,slugway-pause"); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"slugway", "slugway-pause"} {
			img, err := tarball.ImageFromPath(filepath.Join(out, n+"-repro.tar"), nil)
			if err != nil {
				t.Fatal(err)
			}
			d, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			digests = append(digests, n+" "+d.String())
		}
	}
	if digests[0] != digests[2] || digests[1] != digests[3] {
		t.Errorf("two builds of the same source differ:\n%s", strings.Join(digests, "\n"))
	}
	t.Logf("digests: %s", strings.Join(digests[:2], ", "))
	// A different version stamped into the binary is a different image.
	if err := run(root, filepath.Join(dir, "c"), "other", "v0.0.0-other", "slugway"); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(filepath.Join(dir, "c", "slugway-other.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); "slugway "+d.String() == digests[0] {
		t.Errorf("another version gave the same digest %s", d)
	}
}
