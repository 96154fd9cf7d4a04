// Command hostilecmp sends the hostile-input cases of internal/hostile, as raw
// bytes, through nginx and HAProxy at their default proxy settings (each in
// front of the same raw TCP instance, on loopback ports it picks), and prints
// a markdown table of what each did: answers, whether the connection closed,
// and what reached the instance. slugway's column comes from
// `go test -run TestHostileInput -v ./proxy/integration`, which runs the same
// cases and logs the same summaries. hack/hostile-compare.sh runs both.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/slugway/slugway/internal/hostile"
)

func main() {
	nginxBin := flag.String("nginx", "nginx", "nginx binary")
	haproxyBin := flag.String("haproxy", "haproxy", "haproxy binary")
	quiet := flag.Duration("quiet", 500*time.Millisecond, "how long a connection must stay quiet to count as kept open")
	flag.Parse()
	if err := run(*nginxBin, *haproxyBin, *quiet); err != nil {
		fmt.Fprintln(os.Stderr, "hostilecmp:", err)
		os.Exit(1)
	}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitListening(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after 10s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func run(nginxBin, haproxyBin string, quiet time.Duration) error {
	in, err := hostile.NewInstance()
	if err != nil {
		return err
	}
	defer in.Close()
	dir, err := os.MkdirTemp("", "hostilecmp")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	nginxAddr, err := freePort()
	if err != nil {
		return err
	}
	// Default proxy settings: proxy_pass without a URI (the target as sent),
	// nothing else changed.
	nginxConf := fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen %[2]s;
    location / { proxy_pass http://%[3]s; }
  }
}
`, dir, nginxAddr, in.Addr())
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(nginxConf), 0o600); err != nil {
		return err
	}
	haproxyAddr, err := freePort()
	if err != nil {
		return err
	}
	haproxyConf := fmt.Sprintf(`global
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind %s
  default_backend be
backend be
  server instance %s
`, haproxyAddr, in.Addr())
	if err := os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(haproxyConf), 0o600); err != nil {
		return err
	}

	ngx := exec.Command(nginxBin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off; master_process off;")
	ngx.Stderr = os.Stderr
	if err := ngx.Start(); err != nil {
		return fmt.Errorf("starting nginx: %w", err)
	}
	defer func() { _ = ngx.Process.Kill(); _ = ngx.Wait() }()
	hap := exec.Command(haproxyBin, "-db", "-f", filepath.Join(dir, "haproxy.cfg"))
	hap.Stderr = os.Stderr
	if err := hap.Start(); err != nil {
		return fmt.Errorf("starting haproxy: %w", err)
	}
	defer func() { _ = hap.Process.Kill(); _ = hap.Wait() }()
	for _, a := range []string{nginxAddr, haproxyAddr} {
		if err := waitListening(a); err != nil {
			return err
		}
	}
	version := func(bin string, args ...string) string {
		out, _ := exec.Command(bin, args...).CombinedOutput()
		return strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
	}
	fmt.Printf("<!-- %s; %s -->\n", version(nginxBin, "-v"), version(haproxyBin, "-v"))
	fmt.Println("| case | nginx | HAProxy |")
	fmt.Println("|---|---|---|")
	for _, c := range hostile.Cases() {
		row := []string{c.Name}
		for _, addr := range []string{nginxAddr, haproxyAddr} {
			r, err := hostile.Run(addr, c, in, quiet)
			if err != nil {
				return fmt.Errorf("%s via %s: %w", c.Name, addr, err)
			}
			row = append(row, r.Summary(c))
		}
		fmt.Println("| " + strings.Join(row, " | ") + " |")
	}
	return nil
}
