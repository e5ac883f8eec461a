package sticky

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Mode says how connections are spread over worker listeners.
type Mode string

const (
	// ModeIP steers every connection from one client IP to the same worker.
	ModeIP Mode = "ip"
	// ModeNone leaves the choice to the kernel's default reuseport hash,
	// which includes the client port.
	ModeNone Mode = "none"
)

// ParseMode parses a gateway.sticky setting; "" means ModeIP.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeIP:
		return ModeIP, nil
	case ModeNone:
		return ModeNone, nil
	}
	return "", fmt.Errorf("unknown sticky mode %q (want \"ip\" or \"none\")", s)
}

// Listen opens n TCP listeners on addr with SO_REUSEPORT, in group order:
// the i-th listener is the one the steering program's return value i
// names. With port 0 the first listener picks the port and the others join
// it. With ModeIP the steering program is attached; if the kernel refuses
// it, one warning is logged and the listeners are returned unsteered.
func Listen(ctx context.Context, addr string, n int, mode Mode, logger *slog.Logger) ([]net.Listener, error) {
	if n < 1 {
		return nil, fmt.Errorf("listen %s: %d workers", addr, n)
	}
	// TCP keepalive, which finds clients that vanished without a FIN, is
	// set once on each listener: accepted sockets inherit it from there,
	// which saves the four setsockopt calls Go would make per accept.
	lc := net.ListenConfig{Control: controlListener, KeepAlive: -1}
	// Go makes listeners MPTCP by default where the kernel has it, and
	// attaching a reuseport program to an MPTCP listener fails with
	// EOPNOTSUPP.
	lc.SetMultipathTCP(false)
	ls := make([]net.Listener, 0, n)
	for i := 0; i < n; i++ {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			closeAll(ls)
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		if i == 0 {
			addr = l.Addr().String() // the concrete port, for the others
		}
		ls = append(ls, l)
	}
	if mode == ModeIP && n > 1 {
		if err := Attach(ls); err != nil && logger != nil {
			logger.Warn("connections are not steered by client IP: the kernel refused the reuseport program",
				"addr", addr, "err", err)
		}
	}
	return ls, nil
}

// Keepalive timing, as Go's defaults for accepted connections: the first
// probe after 15 s idle, then every 15 s, dropped after 9 unanswered.
const (
	keepAliveIdle     = 15 // seconds
	keepAliveInterval = 15 // seconds
	keepAliveCount    = 9
)

// controlListener sets SO_REUSEPORT and the keepalive that accepted
// sockets inherit on a listening socket before it binds.
func controlListener(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		for _, o := range []struct{ level, name, value int }{
			{unix.SOL_SOCKET, unix.SO_REUSEPORT, 1},
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdle},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAliveInterval},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
		} {
			if serr = unix.SetsockoptInt(int(fd), o.level, o.name, o.value); serr != nil {
				serr = fmt.Errorf("setsockopt %d/%d: %w", o.level, o.name, serr)
				return
			}
		}
	}); err != nil {
		return err
	}
	return serr
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		_ = l.Close()
	}
}

// Attach attaches the steering program to the reuseport group of ls, whose
// order must be the order they were opened in. Closing a member reorders
// the group, so attach again after any change.
func Attach(ls []net.Listener) error {
	if len(ls) == 0 {
		return errors.New("attach: no listeners")
	}
	prog := steeringProgram(len(ls))
	sc, ok := ls[0].(syscall.Conn)
	if !ok {
		return fmt.Errorf("attach: %T has no file descriptor", ls[0])
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	}); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("attach SO_ATTACH_REUSEPORT_CBPF: %w", serr)
	}
	return nil
}
