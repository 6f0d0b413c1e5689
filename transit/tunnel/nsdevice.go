package tunnel

import (
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/tencrypt/tencrypt/internal/netns"
)

// wireguard-go opens sockets on whatever thread calls it: NativeTun.MTU
// makes an ioctl socket per call, and Bind.Open makes the UDP sockets. One
// agent serves many pods from one process, so each call that creates a
// socket is made on a thread inside the pod's namespace. Calls on existing
// file descriptors (Read, Write, Send, SetMark) need no wrapping: an fd
// stays in the namespace it was made in.

// nsTUN is a TUN device living in a pod's namespace.
type nsTUN struct {
	tun.Device
	ns *netns.Handle
}

func (t *nsTUN) MTU() (int, error) {
	var mtu int
	err := t.ns.Do(func() error {
		var err error
		mtu, err = t.Device.MTU()
		return err
	})
	return mtu, err
}

// nsBind is a UDP bind whose sockets live in a pod's namespace.
type nsBind struct {
	conn.Bind
	ns *netns.Handle
}

func (b *nsBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	var fns []conn.ReceiveFunc
	var actual uint16
	err := b.ns.Do(func() error {
		var err error
		fns, actual, err = b.Bind.Open(port)
		return err
	})
	return fns, actual, err
}
