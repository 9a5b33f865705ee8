package pgutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Network bounds of every pgms connection. A node that stops answering
// without closing the connection (a partition, a dead host, a firewall
// dropping packets) must turn into an error within seconds, not after the
// kernel's defaults (two hours of keepalive idle, fifteen minutes of
// retransmission).
const (
	// KeepAliveIdle is how long a connection may be silent before the
	// kernel probes it; KeepAliveInterval and KeepAliveCount then declare
	// it dead after Count unanswered probes.
	KeepAliveIdle     = 5 * time.Second
	KeepAliveInterval = 2 * time.Second
	KeepAliveCount    = 3
	// UserTimeout bounds how long sent data may stay unacknowledged before
	// the connection fails (TCP_USER_TIMEOUT): it catches a partition while
	// pgms is sending, which keepalives do not cover.
	UserTimeout = 15 * time.Second
)

// RunToken identifies this pgms process among the sessions of a server:
// every session it opens is named "pgms/<token>" (application_name). A run
// that takes over a shard from a run whose claim ended can then end
// exactly that run's remaining sessions, and cleanup recognises the
// sessions of a pgms that is still running.
var RunToken = newToken()

func newToken() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "000000000000"
	}
	return hex.EncodeToString(b[:])
}

// SessionName is the application_name of this process's sessions.
func SessionName() string { return ApplicationName + "/" + RunToken }

// TokenOf returns the run token of a pgms session's application_name
// ("pgms/<token>…"), or "" when the name carries none.
func TokenOf(application string) string {
	rest, ok := strings.CutPrefix(application, ApplicationName+"/")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, " /"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// dialer opens TCP connections with the bounds above.
var dialer = &net.Dialer{
	Timeout: DefaultConnectTimeout,
	KeepAliveConfig: net.KeepAliveConfig{
		Enable:   true,
		Idle:     KeepAliveIdle,
		Interval: KeepAliveInterval,
		Count:    KeepAliveCount,
	},
	Control: func(network, _ string, c syscall.RawConn) error {
		if !strings.HasPrefix(network, "tcp") {
			return nil
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(UserTimeout/time.Millisecond))
		})
		if err != nil {
			return err
		}
		return serr
	},
}

// Dial is the DialFunc of pgms connections.
func Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialer.DialContext(ctx, network, addr)
}
