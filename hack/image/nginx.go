package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// NginxImage is nginx as Debian packages it, for hack/bench-node.sh: the peer the proxy is
// measured against on the node. It is built only when named (-only slugway-bench-nginx),
// never by default, as it needs nginx installed on the build machine.
const NginxImage = "slugway-bench-nginx"

// nginxBinary is where Debian's nginx packages (nginx-light, nginx) install it.
const nginxBinary = "/usr/sbin/nginx"

// nginxSpec packs the build machine's Debian nginx and the shared libraries it links (as
// ldd resolves them, the dynamic loader included) on an empty base, run as user 65532. It
// has no configuration: the pod mounts one and passes -c; nginx's compiled-in error log is
// stderr and its temporary paths are under /var/lib/nginx, which the pod mounts writable.
func nginxSpec() (spec, error) {
	if _, err := os.Stat(nginxBinary); err != nil {
		return spec{}, fmt.Errorf("image %s: %s not found: install Debian's nginx-light (apt-get install nginx-light)", NginxImage, nginxBinary)
	}
	libs, err := sharedLibs(nginxBinary)
	if err != nil {
		return spec{}, fmt.Errorf("image %s: %w", NginxImage, err)
	}
	files := map[string]string{nginxBinary: nginxBinary}
	for _, l := range libs {
		files[l] = l
	}
	return spec{
		Name:       NginxImage,
		Files:      files,
		User:       "65532:65532",
		Entrypoint: []string{nginxBinary, "-g", "daemon off;"},
		Expose:     []string{"8080/tcp"},
	}, nil
}

// sharedLibs lists the absolute paths of the libraries ldd says bin loads, the dynamic
// loader included (the vDSO has no file and is left out).
func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %v (is libc-bin installed?)", bin, err)
	}
	return parseLdd(string(out))
}

// parseLdd reads ldd's output: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
// "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)".
func parseLdd(out string) ([]string, error) {
	var libs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case len(f) >= 3 && f[1] == "=>":
			if f[2] == "not" {
				return nil, fmt.Errorf("ldd: %s not found", f[0])
			}
			libs = append(libs, f[2])
		case filepath.IsAbs(f[0]):
			libs = append(libs, f[0])
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd listed no libraries (a static binary?)")
	}
	return libs, nil
}
