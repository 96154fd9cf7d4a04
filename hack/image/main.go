// Command image builds slugway's container images without Docker: the slugway image (the
// same content as the Dockerfile: the static binary, the CA roots, user 65532, no shell),
// one image per example with a Dockerfile (examples/*/Dockerfile) and the pause image the
// node of hack/node.sh needs, since nothing can be pulled there; and, only when named with
// -only, slugway-bench-nginx (Debian's nginx, for hack/bench-node.sh). Each is written as a
// docker archive (`ctr images import` loads it). Builds are reproducible: the same source
// gives the same digest, as every timestamp is fixed and the binaries use -trimpath.
//
//	go run ./hack/image -out bin/images -tag dev
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/slugway/slugway/internal/dockerfile"
)

// caBundle is where Debian (and the golang image the Dockerfile builds in) keeps the CA roots.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// PauseImage is the sandbox image hack/node.sh configures containerd with.
const PauseImage = "slugway-pause"

// slugwaySpec is the image the Dockerfile at the repository root describes.
func slugwaySpec(version string) spec {
	return spec{
		Name:       "slugway",
		Pkg:        ".",
		Binary:     "/slugway",
		LDFlags:    "-s -w -X main.version=" + version,
		Files:      map[string]string{caBundle: caBundle},
		User:       "65532:65532",
		Entrypoint: []string{"/slugway"},
	}
}

// pauseSpec is the pod sandbox: it holds the namespaces and reaps children.
func pauseSpec() spec {
	return spec{
		Name:       PauseImage,
		Pkg:        "./hack/image/pause",
		Binary:     "/pause",
		LDFlags:    "-s -w",
		User:       "65535:65535",
		Entrypoint: []string{"/pause"},
	}
}

var ldflagsRE = regexp.MustCompile(`-ldflags\s+"([^"]*)"`)

// exampleSpecs reads every examples/<name>/Dockerfile whose final stage is FROM scratch and
// describes the image it builds (the binary from ./examples/<name>).
func exampleSpecs(root string) ([]spec, error) {
	paths, err := filepath.Glob(filepath.Join(root, "examples", "*", "Dockerfile"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var out []spec
	for _, p := range paths {
		df, err := dockerfile.ParseFile(p)
		if err != nil {
			return nil, err
		}
		st := df.Final()
		if st.From != "scratch" {
			continue
		}
		dir := filepath.Base(filepath.Dir(p))
		if len(st.Entrypoint) == 0 || len(st.Copies) != 1 || st.Copies[0] != st.Entrypoint[0] {
			return nil, fmt.Errorf("%s: want one COPY of the binary that ENTRYPOINT runs", p)
		}
		m := ldflagsRE.FindStringSubmatch(df.GoBuild)
		if m == nil {
			return nil, fmt.Errorf("%s: no go build -ldflags \"...\" line", p)
		}
		out = append(out, spec{
			Name:       dir,
			Pkg:        "./examples/" + dir,
			Binary:     st.Entrypoint[0],
			LDFlags:    m[1],
			User:       st.User,
			Entrypoint: st.Entrypoint,
			Expose:     st.Expose,
		})
	}
	return out, nil
}

// allSpecs is every image `make image` builds.
func allSpecs(root, version string) ([]spec, error) {
	ex, err := exampleSpecs(root)
	if err != nil {
		return nil, err
	}
	return append([]spec{slugwaySpec(version), pauseSpec()}, ex...), nil
}

func main() {
	root, _ := os.Getwd()
	out := flag.String("out", filepath.Join(root, "bin", "images"), "directory for the archives (<name>-<tag>.tar)")
	tag := flag.String("tag", "dev", "tag of every image")
	version := flag.String("version", "", "version stamped into the slugway binary (default: the tag)")
	only := flag.String("only", "", "comma-separated image names to build (default: all but "+NginxImage+", which is built only when named)")
	flag.Parse()
	if *version == "" {
		*version = *tag
	}
	if err := run(root, *out, *tag, *version, *only); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(root, out, tag, version, only string) error {
	specs, err := allSpecs(root, version)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		if n != "" {
			want[n] = true
		}
	}
	if want[NginxImage] { // only when named: it packs the build machine's nginx
		s, err := nginxSpec()
		if err != nil {
			return err
		}
		specs = append(specs, s)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, s := range specs {
		if len(want) > 0 && !want[s.Name] {
			continue
		}
		delete(want, s.Name)
		img, err := build(root, s)
		if err != nil {
			return err
		}
		ref, err := name.NewTag(s.Name + ":" + tag)
		if err != nil {
			return err
		}
		path := filepath.Join(out, s.Name+"-"+tag+".tar")
		if err := write(path, ref, img); err != nil {
			return err
		}
		d, err := img.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("%s\t%s\t%s\n", ref, d, path)
	}
	for n := range want {
		return fmt.Errorf("no image named %q", n)
	}
	return nil
}

// write writes the docker archive atomically, so a reader never sees half of it.
func write(path string, ref name.Tag, img v1.Image) error {
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
