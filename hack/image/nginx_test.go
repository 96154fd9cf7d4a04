package main

import (
	"os"
	"reflect"
	"testing"
)

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f13)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f13)\n"
	got, err := parseLdd(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseLdd = %q, want %q", got, want)
	}
	if _, err := parseLdd("\tlibfoo.so.1 => not found\n"); err == nil {
		t.Error("a library ldd cannot find: no error")
	}
	if _, err := parseLdd("\tnot a dynamic executable\n"); err == nil {
		t.Error("no libraries: no error")
	}
}

// The nginx image holds the binary and its libraries, executable where the host's are.
func TestNginxImage(t *testing.T) {
	if _, err := os.Stat(nginxBinary); err != nil {
		t.Skipf("%s not installed (Debian's nginx-light): the image packs the build machine's nginx", nginxBinary)
	}
	s, err := nginxSpec()
	if err != nil {
		t.Fatal(err)
	}
	img := buildSpec(t, repoRoot(t), s)
	files, err := imageFiles(img)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := files[nginxBinary]
	if !ok {
		t.Fatalf("no %s in the image: %v", nginxBinary, files)
	}
	if h.Mode&0o111 == 0 {
		t.Errorf("%s mode %o: not executable", nginxBinary, h.Mode)
	}
	for _, l := range s.Files {
		if _, ok := files[l]; !ok {
			t.Errorf("no %s in the image", l)
		}
	}
}
