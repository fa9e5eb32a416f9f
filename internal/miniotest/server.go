package miniotest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Region is the region the test server reports.
const Region = "us-east-1"

// startTimeout bounds the wait for a server to answer its health check; the
// first start on a busy machine takes a few seconds.
const startTimeout = 60 * time.Second

// Server is a running S3 server (MinIO or versitygw) on 127.0.0.1.
type Server struct {
	Kind      Kind   // which server
	Endpoint  string // 127.0.0.1:port, the S3 API (HTTPS)
	AccessKey string
	SecretKey string
	Dir       string // the server's data directory
	CACert    string // PEM file of the CA that signed the server certificate

	bin      string
	certsDir string
	console  string
	pool     *x509.CertPool
	log      *logTail
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has exited
}

// Start runs a MinIO server in a temporary directory and waits until it
// serves requests. The server stops when the test ends; if the test
// failed, the tail of the server's log is printed.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartKind(t, MinIO)
}

// StartKind is Start for the server of kind k.
func StartKind(t testing.TB, k Kind) *Server {
	t.Helper()
	bin := RequireKind(t, k)
	root := t.TempDir()
	certFile, pool, err := writeCert(filepath.Join(root, "certs"))
	if err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	s := &Server{
		Kind:      k,
		AccessKey: "nestguard-test",
		SecretKey: randomHex(t, 20),
		Dir:       filepath.Join(root, "data"),
		CACert:    certFile,
		bin:       bin,
		certsDir:  filepath.Join(root, "certs"),
		pool:      pool,
		log:       &logTail{max: 64 << 10},
	}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("miniotest: tail of the %s log (%s):\n%s", k, s.Endpoint, s.log.String())
		}
	})
	// Free ports are found by binding and releasing them, so another
	// process can take one in between: try again with new ports.
	for attempt := 1; ; attempt++ {
		s.Endpoint, s.console = freeAddr(t), freeAddr(t)
		err := s.start()
		if err == nil {
			return s
		}
		if attempt == 3 || !strings.Contains(s.log.String(), "address already in use") {
			t.Fatalf("miniotest: starting %s: %v\n%s", k, err, s.log.String())
		}
	}
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("miniotest: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start launches the server on s.Endpoint and waits for its health check.
func (s *Server) start() error {
	// A minimal environment: MINIO_* or VGW_* settings of the developer's
	// shell must not change the test server, and HOME keeps it out of the
	// real one.
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Dir(s.Dir),
		"TMPDIR=" + os.TempDir(),
	}
	var cmd *exec.Cmd
	switch s.Kind {
	case Versity:
		// The posix backend keeps objects as files under Dir, one
		// directory per bucket, and their old versions (Object Lock
		// needs versioning) under versions.
		versions := filepath.Join(filepath.Dir(s.Dir), "versions")
		for _, d := range []string{s.Dir, versions} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return err
			}
		}
		cmd = exec.Command(s.bin, "--port", s.Endpoint,
			"--cert", filepath.Join(s.certsDir, "public.crt"), "--key", filepath.Join(s.certsDir, "private.key"),
			"--health", healthPath(s.Kind), "--quiet",
			"posix", "--versioning-dir", versions, s.Dir)
		env = append(env, "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	default:
		cmd = exec.Command(s.bin, "server", s.Dir,
			"--address", s.Endpoint, "--console-address", s.console, "--certs-dir", s.certsDir)
		env = append(env,
			"MINIO_ROOT_USER="+s.AccessKey,
			"MINIO_ROOT_PASSWORD="+s.SecretKey,
			"MINIO_BROWSER=off",
			"MINIO_UPDATE=off")
	}
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	if err := s.waitHealthy(); err != nil {
		s.kill()
		return err
	}
	return nil
}

func (s *Server) httpClient() *http.Client {
	return &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS13},
			Proxy:           nil, // never send loopback traffic to a proxy
		},
	}
}

func (s *Server) waitHealthy() error {
	c := s.httpClient()
	defer c.CloseIdleConnections()
	url := "https://" + s.Endpoint + healthPath(s.Kind)
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("health check: %s", resp.Status)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited during start-up (%v)", s.Kind, s.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %v: %w", s.Kind, startTimeout, err)
		}
	}
}

// kill stops the server abruptly, like a crash or a lost machine, and
// waits until it has exited.
func (s *Server) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Stop kills the server and waits for it to exit: the storage goes away
// without warning. Restart brings it back.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		t.Fatal("miniotest: Stop of a server that is not running")
	}
	s.kill()
}

// Restart starts the server again on the same directory and port (after
// stopping it if it runs).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.kill()
	// The old process's port may linger briefly: retry for a few seconds.
	var err error
	for range 20 {
		if err = s.start(); err == nil {
			return
		}
		if !strings.Contains(s.log.String(), "address already in use") {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("miniotest: restarting %s on %s: %v", s.Kind, s.Endpoint, err)
}

// Running reports whether the server process is running.
func (s *Server) Running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// healthPath is where the server of kind k answers 200 once it serves.
func healthPath(k Kind) string {
	if k == Versity {
		return "/health"
	}
	return "/minio/health/live"
}
