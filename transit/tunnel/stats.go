package tunnel

import (
	"errors"
	"net/netip"
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

// Stats reads per-peer counters from the device. It runs in this process
// (no system call into the pod), so it is cheap enough for every round.
func (t *Tunnel) Stats() ([]PeerStats, error) {
	t.mu.Lock()
	dev := t.uapi
	t.mu.Unlock()
	if dev == nil {
		return nil, errors.New("tunnel is closed")
	}
	return readStats(dev)
}

// parseStats reads wireguard-go's UAPI "get" output (key=value lines; a
// public_key line starts a peer), skipping the key lines.
func parseStats(text []byte) ([]PeerStats, error) {
	var s statsReader
	s.Write(text)
	return s.result()
}
