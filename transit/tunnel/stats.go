package tunnel

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// PeerStats is what the device knows about one peer.
type PeerStats struct {
	PublicKey PublicKey      `json:"public_key"`
	IP        netip.Addr     `json:"ip"`
	Endpoint  netip.AddrPort `json:"endpoint"`
	// LastHandshake is zero until a handshake completed.
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	RxBytes       uint64    `json:"rx_bytes"`
	TxBytes       uint64    `json:"tx_bytes"`
}

// Stats reads per-peer counters from the device.
func (t *Tunnel) Stats() ([]PeerStats, error) {
	t.mu.Lock()
	dev := t.dev
	t.mu.Unlock()
	if dev == nil {
		return nil, fmt.Errorf("tunnel is closed")
	}
	text, err := dev.IpcGet()
	if err != nil {
		return nil, err
	}
	return parseStats(text)
}

// parseStats reads wireguard-go's UAPI "get" output (key=value lines; a
// public_key line starts a peer).
func parseStats(text string) ([]PeerStats, error) {
	var out []PeerStats
	var cur *PeerStats
	var sec, nsec int64
	flush := func() {
		if cur != nil {
			if sec != 0 || nsec != 0 {
				cur.LastHandshake = time.Unix(sec, nsec)
			}
			out = append(out, *cur)
		}
		sec, nsec = 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		var err error
		switch k {
		case "public_key":
			flush()
			cur = &PeerStats{}
			var b []byte
			if b, err = hex.DecodeString(v); err == nil && len(b) == KeySize {
				copy(cur.PublicKey[:], b)
			} else {
				err = fmt.Errorf("bad public key %q", v)
			}
		case "endpoint":
			if cur != nil {
				cur.Endpoint, err = netip.ParseAddrPort(v)
			}
		case "allowed_ip":
			if cur != nil {
				var p netip.Prefix
				if p, err = netip.ParsePrefix(v); err == nil {
					cur.IP = p.Addr()
				}
			}
		case "last_handshake_time_sec":
			sec, err = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, err = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			if cur != nil {
				cur.RxBytes, err = strconv.ParseUint(v, 10, 64)
			}
		case "tx_bytes":
			if cur != nil {
				cur.TxBytes, err = strconv.ParseUint(v, 10, 64)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("WireGuard status line %q: %w", k, err)
		}
	}
	flush()
	return out, sc.Err()
}
