package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/tencrypt/tencrypt/internal/netns"
)

// Server answers, inside a pod, every TCP connection and UDP datagram on a
// port with the pod's name: enough to see which backend a Service VIP chose
// and that a path works, with no tool installed in the pod.
type Server struct {
	tcp  net.Listener
	udp  net.PacketConn
	name string
	wg   sync.WaitGroup
}

// Serve starts a Server for the named pod, with sockets created inside the
// pod's namespace, listening on port for both TCP and UDP.
func (m *Manager) Serve(labName, pod string, port uint16) (*Server, error) {
	ns, err := m.podNamespace(labName, pod)
	if err != nil {
		return nil, err
	}
	return ServeIn(ns, pod, port)
}

// ServeIn starts a Server in a namespace; it answers with name.
func ServeIn(ns, name string, port uint16) (*Server, error) {
	s := &Server{name: name}
	err := netns.Do(ns, func() error {
		var err error
		if s.tcp, err = net.Listen("tcp4", fmt.Sprintf(":%d", port)); err != nil {
			return err
		}
		if s.udp, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port)); err != nil {
			s.tcp.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listen in %s: %w", ns, err)
	}
	s.wg.Add(2)
	go s.serveTCP()
	go s.serveUDP()
	return s, nil
}

func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "%s\n", s.name)
		}()
	}
}

func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for {
		_, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		s.udp.WriteTo([]byte(s.name+"\n"), from)
	}
}

// Close stops the server and waits for its loops to end.
func (s *Server) Close() error {
	err := errors.Join(s.tcp.Close(), s.udp.Close())
	s.wg.Wait()
	return err
}

// Probe connects from inside the named pod to addr ("ip:port") over network
// ("tcp" or "udp"), and returns the name the Server there answered with.
func (m *Manager) Probe(ctx context.Context, labName, pod, network, addr string) (string, error) {
	ns, err := m.podNamespace(labName, pod)
	if err != nil {
		return "", err
	}
	return ProbeFrom(ctx, ns, network, addr)
}

// ProbeFrom is Probe from a namespace given by name.
func ProbeFrom(ctx context.Context, ns, network, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var c net.Conn
	err := netns.Do(ns, func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, network+"4", addr)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("connect from %s to %s/%s: %w", ns, addr, network, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if network == "udp" {
		if _, err := c.Write([]byte("probe\n")); err != nil {
			return "", err
		}
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read from %s/%s: %w", addr, network, err)
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

func (m *Manager) podNamespace(labName, pod string) (string, error) {
	st, err := m.readState(labName)
	if err != nil {
		return "", err
	}
	p, ok := st.Plan.Pod(pod)
	if !ok {
		return "", fmt.Errorf("%w: %q in lab %q", ErrUnknownTarget, pod, labName)
	}
	return p.NetNS, nil
}
