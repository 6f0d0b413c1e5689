package kmsplugin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	kmsapi "k8s.io/kms/apis/v2"
	"k8s.io/kms/pkg/service"
)

// SocketPath turns the endpoint kube-apiserver's EncryptionConfiguration
// names ("unix:///var/run/tencrypt/kms.sock") or a bare absolute path into
// the socket's path.
func SocketPath(endpoint string) (string, error) {
	p := endpoint
	if rest, ok := strings.CutPrefix(endpoint, "unix://"); ok {
		p = rest
	} else if strings.Contains(endpoint, "://") {
		return "", fmt.Errorf("listen address %q: only unix:///absolute/path sockets are supported (kube-apiserver's KMS endpoint)", endpoint)
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("listen address %q: want unix:///absolute/path", endpoint)
	}
	return filepath.Clean(p), nil
}

// ListenUnix listens on the socket at path with mode 0600 (only root's
// kube-apiserver may call the plugin), replacing a socket left by a plugin
// that died, but never a live one or a file that is not a socket.
func ListenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("kms socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("kms socket %s: exists and is not a socket; remove it or choose another --listen", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("kms socket %s: another plugin is serving it; stop that one first", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("kms socket %s: removing a stale socket: %w", path, err)
		}
	}
	// Bind in a fresh 0700 directory, make the socket 0600, then move it
	// into place: it is never reachable with looser permissions, and the
	// process-wide umask is left alone.
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".kms-socket-")
	if err != nil {
		return nil, fmt.Errorf("kms socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("kms socket: %w", err)
	}
	// Server.Close removes the socket at its final path.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(bound, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("kms socket: %w", err)
	}
	if err := os.Rename(bound, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("kms socket %s: %w", path, err)
	}
	return ln, nil
}

// Handler serves GET /healthz (200 "ok" when the backend answers and holds
// the cluster key, 503 with the reason otherwise) and GET /metrics from g.
func Handler(p *Plugin, g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := p.Healthy(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unhealthy: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	return mux
}

// Server runs the plugin's gRPC service on a Unix socket, and optionally
// its health and metrics endpoint on TCP.
type Server struct {
	grpc *grpc.Server
	ln   net.Listener
	path string
	http *http.Server
	hln  net.Listener
}

// NewServer listens on the KMS socket (see SocketPath, ListenUnix) and, if
// httpAddr is not empty, on httpAddr for Handler. Nothing is served until
// Serve.
func NewServer(p *Plugin, endpoint, httpAddr string, g prometheus.Gatherer) (_ *Server, err error) {
	path, err := SocketPath(endpoint)
	if err != nil {
		return nil, err
	}
	s := &Server{path: path}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.ln, err = ListenUnix(path); err != nil {
		return nil, err
	}
	s.grpc = grpc.NewServer()
	// GRPCService only converts between the wire types and service.Service.
	kmsapi.RegisterKeyManagementServiceServer(s.grpc, service.NewGRPCService(path, 0, p))
	if httpAddr != "" {
		if s.hln, err = net.Listen("tcp", httpAddr); err != nil {
			return nil, fmt.Errorf("health and metrics endpoint: %w", err)
		}
		s.http = &http.Server{Handler: Handler(p, g), ReadHeaderTimeout: 10 * time.Second}
	}
	return s, nil
}

// SocketPath returns the path of the socket being served.
func (s *Server) SocketPath() string { return s.path }

// HTTPAddr returns the health endpoint's address, or "" without one.
func (s *Server) HTTPAddr() string {
	if s.hln == nil {
		return ""
	}
	return s.hln.Addr().String()
}

// Serve serves until ctx is done, then stops gracefully (finishing calls in
// flight) and removes the socket.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- s.grpc.Serve(s.ln) }()
	if s.http != nil {
		go func() {
			if err := s.http.Serve(s.hln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("health endpoint: %w", err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.Close()
	return err
}

// Close stops serving at once and removes the socket.
func (s *Server) Close() {
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
	} else if s.hln != nil {
		s.hln.Close()
	}
	if s.grpc != nil {
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			s.grpc.Stop()
		}
	} else if s.ln != nil {
		s.ln.Close()
	}
	if s.ln != nil {
		_ = os.Remove(s.path)
	}
}
