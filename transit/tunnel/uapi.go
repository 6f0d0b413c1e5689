package tunnel

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"
)

// wireguard-go is configured and read through its UAPI text protocol
// (key=value lines). Keys cross it in hex, so they are written into a byte
// buffer that is wiped after use, never into a Go string (which cannot be
// wiped). wireguard-go's own parser still turns each line into a string
// internally; that copy is out of our reach.

// uapiDevice is the part of *device.Device that configures and reads it.
type uapiDevice interface {
	IpcSetOperation(r io.Reader) error
	IpcGetOperation(w io.Writer) error
}

// wipeBuf is a byte buffer that wipes every backing array it leaves behind
// when it grows, and its own one on wipe.
type wipeBuf struct{ b []byte }

func newWipeBuf(size int) *wipeBuf { return &wipeBuf{b: make([]byte, 0, size)} }

func (w *wipeBuf) grow(n int) {
	if cap(w.b)-len(w.b) >= n {
		return
	}
	nb := make([]byte, len(w.b), 2*cap(w.b)+n)
	copy(nb, w.b)
	clear(w.b[:cap(w.b)])
	w.b = nb
}

// line appends "name=value\n"; value is not secret.
func (w *wipeBuf) line(name, value string) {
	w.grow(len(name) + len(value) + 2)
	w.b = append(w.b, name...)
	w.b = append(w.b, '=')
	w.b = append(w.b, value...)
	w.b = append(w.b, '\n')
}

// key appends "name=<hex of k>\n".
func (w *wipeBuf) key(name string, k *[KeySize]byte) {
	w.grow(len(name) + 2*KeySize + 2)
	w.b = append(w.b, name...)
	w.b = append(w.b, '=')
	w.b = hex.AppendEncode(w.b, k[:])
	w.b = append(w.b, '\n')
}

func (w *wipeBuf) wipe() {
	clear(w.b[:cap(w.b)])
	w.b = w.b[:0]
}

// ipcSet hands a configuration to the device and wipes it.
func ipcSet(dev uapiDevice, cfg *wipeBuf) error {
	defer cfg.wipe()
	return dev.IpcSetOperation(bytes.NewReader(cfg.b))
}

// statsReader receives the device's UAPI "get" output and keeps only the
// per-peer statistics. The private_key and preshared_key lines are skipped
// without being copied; a line split across writes is held in a buffer that
// is wiped once the line is complete.
type statsReader struct {
	peers []PeerStats
	cur   *PeerStats
	sec   int64
	nsec  int64
	part  wipeBuf
	err   error
}

func (s *statsReader) Write(p []byte) (int, error) {
	n := len(p)
	if s.err != nil {
		return n, nil
	}
	if len(s.part.b) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.part.grow(len(p))
			s.part.b = append(s.part.b, p...)
			return n, nil
		}
		s.part.grow(i)
		s.part.b = append(s.part.b, p[:i]...)
		s.line(s.part.b)
		s.part.wipe()
		p = p[i+1:]
	}
	for len(p) > 0 && s.err == nil {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.part.grow(len(p))
			s.part.b = append(s.part.b, p...)
			break
		}
		s.line(p[:i])
		p = p[i+1:]
	}
	return n, nil
}

func (s *statsReader) flush() {
	if s.cur != nil {
		if s.sec != 0 || s.nsec != 0 {
			s.cur.LastHandshake = time.Unix(s.sec, s.nsec)
		}
		s.peers = append(s.peers, *s.cur)
	}
	s.cur = nil
	s.sec, s.nsec = 0, 0
}

// line reads one key=value line. Only the key name and non-secret values
// are turned into strings.
func (s *statsReader) line(l []byte) {
	k, v, ok := bytes.Cut(l, []byte("="))
	if !ok {
		return
	}
	var err error
	switch string(k) {
	case "private_key", "preshared_key":
		return
	case "public_key":
		s.flush()
		s.cur = &PeerStats{}
		if hex.DecodedLen(len(v)) != KeySize {
			err = fmt.Errorf("bad public key %q", v)
		} else if _, err = hex.Decode(s.cur.PublicKey[:], v); err != nil {
			err = fmt.Errorf("bad public key %q", v)
		}
	case "endpoint":
		if s.cur != nil {
			s.cur.Endpoint, err = netip.ParseAddrPort(string(v))
		}
	case "allowed_ip":
		if s.cur != nil {
			var p netip.Prefix
			if p, err = netip.ParsePrefix(string(v)); err == nil {
				s.cur.IP = p.Addr()
			}
		}
	case "last_handshake_time_sec":
		s.sec, err = strconv.ParseInt(string(v), 10, 64)
	case "last_handshake_time_nsec":
		s.nsec, err = strconv.ParseInt(string(v), 10, 64)
	case "rx_bytes":
		if s.cur != nil {
			s.cur.RxBytes, err = strconv.ParseUint(string(v), 10, 64)
		}
	case "tx_bytes":
		if s.cur != nil {
			s.cur.TxBytes, err = strconv.ParseUint(string(v), 10, 64)
		}
	}
	if err != nil {
		s.err = fmt.Errorf("WireGuard status line %q: %w", k, err)
	}
}

// result ends the read: the peers, or the first parse error.
func (s *statsReader) result() ([]PeerStats, error) {
	if len(s.part.b) > 0 && s.err == nil {
		s.line(s.part.b)
	}
	s.part.wipe()
	if s.err != nil {
		return nil, s.err
	}
	s.flush()
	return s.peers, nil
}

// readStats reads per-peer statistics from a device.
func readStats(dev uapiDevice) ([]PeerStats, error) {
	var s statsReader
	if err := dev.IpcGetOperation(&s); err != nil {
		s.part.wipe()
		return nil, err
	}
	return s.result()
}
