package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// spec describes one image: static Go binaries (and other files) on an empty base, run as
// a numeric non-root user.
type spec struct {
	Name string // repository, e.g. "slugway"
	// Pkg is the Go package built into Binary (e.g. "." or "./examples/skeleton-svc").
	Pkg     string
	Binary  string // path in the image, e.g. "/slugway"
	LDFlags string
	// Files are copied from the build machine: image path -> host path.
	Files      map[string]string
	User       string
	Entrypoint []string
	Expose     []string
}

// file is one regular file of the image's single layer.
type file struct {
	path string // absolute, in the image
	mode int64
	data []byte
}

// goBuild builds pkg as a static linux binary, with the flags the Dockerfiles use.
func goBuild(root, pkg, ldflags, arch string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "slugway-image-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	out := filepath.Join(dir, "bin")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return os.ReadFile(out)
}

// layer is a tar of files and their parent directories, owned by root, with every
// timestamp at the epoch, so the same files always give the same digest.
func layer(files []file) (v1.Layer, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.path); d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.path, "/"), Mode: f.mode, Size: int64(len(f.data)), Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

// build returns the image a spec describes.
func build(root string, s spec) (v1.Image, error) {
	arch := runtime.GOARCH
	var files []file
	if s.Pkg != "" {
		bin, err := goBuild(root, s.Pkg, s.LDFlags, arch)
		if err != nil {
			return nil, err
		}
		files = append(files, file{path: s.Binary, mode: 0o755, data: bin})
	}
	for dst, src := range s.Files {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("image %s needs %s: %w", s.Name, src, err)
		}
		mode := int64(0o644)
		if st, err := os.Stat(src); err == nil && st.Mode().Perm()&0o111 != 0 {
			mode = 0o755 // executables and the dynamic loader keep their execute bits
		}
		files = append(files, file{path: dst, mode: mode, data: data})
	}
	l, err := layer(files)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.User = s.User
	cf.Config.Entrypoint = s.Entrypoint
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if len(s.Expose) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range s.Expose {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	return mutate.ConfigFile(img, cf)
}

// imageFiles lists the paths of an image's files and directories (for the tests and -list).
func imageFiles(img v1.Image) (map[string]*tar.Header, error) {
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out["/"+strings.TrimSuffix(h.Name, "/")] = h
	}
}
