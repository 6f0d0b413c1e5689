// Package vaulttest runs a real Vault server in dev mode on 127.0.0.1 for
// tests: in-memory storage, unsealed, a random root token, transit enabled.
// The binary is the one scripts/build-vault caches under $TENCRYPT_CACHE/bin.
package vaulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/internal/testenv"
)

// Server is a running `vault server -dev`.
type Server struct {
	// Addr is the server's URL, http://127.0.0.1:PORT.
	Addr string
	// RootToken is the dev server's root token.
	RootToken string
	// Mount is where transit is enabled ("transit").
	Mount string

	cmd  *exec.Cmd
	dir  string
	log  string
	done chan struct{}
}

// Binary returns the path of the cached Vault binary, or an error telling how
// to build it.
func Binary() (string, error) {
	cache := os.Getenv("TENCRYPT_CACHE")
	if cache == "" {
		cache = "/var/cache/tencrypt"
	}
	bin := filepath.Join(cache, "bin", "vault")
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("no Vault server binary at %s: run scripts/setup as root (it builds Vault once per machine with scripts/build-vault, about 25 minutes)", bin)
	}
	return bin, nil
}

// Start starts a server for tb and stops it in tb.Cleanup; it fails tb if
// the server cannot start.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := StartServer(context.Background(), tb.TempDir())
	if err != nil {
		tb.Fatalf("starting a Vault dev server: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("stopping the Vault dev server: %v", err)
		}
	})
	return s
}

// StartServer starts a server whose files (home, log) live in dir, which the
// caller removes after Stop. It is for TestMain, where there is no tb.
func StartServer(ctx context.Context, dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	// A free port can be taken between our probe and Vault's bind (and dev
	// mode also binds PORT+1 for clustering): try a few.
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := start(ctx, bin, dir, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(ctx context.Context, bin, dir string, port int) (*Server, error) {
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	s := &Server{
		Addr:      "http://127.0.0.1:" + strconv.Itoa(port),
		RootToken: "root-" + hex.EncodeToString(tok),
		Mount:     "transit",
		dir:       dir,
		log:       filepath.Join(dir, fmt.Sprintf("vault-%d.log", port)),
		done:      make(chan struct{}),
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "server", "-dev",
		"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port),
		"-dev-root-token-id="+s.RootToken,
		"-dev-no-store-token",
	)
	// A clean environment: HOME in dir so nothing is written to the real
	// one, and no VAULT_* from the caller.
	s.cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "VAULT_DISABLE_MLOCK=true"}
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s: %w", bin, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	if err := s.enableTransit(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Addr+"/v1/sys/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("vault server exited while starting (%v); its log:\n%s", s.cmd.ProcessState, s.LogTail())
		case <-ctx.Done():
			return fmt.Errorf("vault server at %s not healthy in time; its log:\n%s", s.Addr, s.LogTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Server) enableTransit(ctx context.Context) error {
	body := bytes.NewReader([]byte(`{"type":"transit"}`))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.Addr+"/v1/sys/mounts/"+s.Mount, body)
	req.Header.Set("X-Vault-Token", s.RootToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("enabling transit: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("enabling transit: HTTP %d; vault log:\n%s", resp.StatusCode, s.LogTail())
	}
	return nil
}

// Stop kills the server (its whole process group) and waits for it. It may
// be called more than once.
func (s *Server) Stop() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	return nil
}

// LogTail returns the last few KB of the server's log, for failure messages.
func (s *Server) LogTail() string {
	return testenv.FileTail(s.log, 4096)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
