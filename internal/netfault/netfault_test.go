package netfault

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// echoServer is a real TCP server that sends back what it receives.
type echoServer struct {
	addr     string
	accepted atomic.Int64
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	e := &echoServer{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return e
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// expect reads exactly want from c within a few seconds.
func expect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %q: got %q, %v", want, got, err)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// expectSilence checks that nothing at all arrives on c for d: no byte, no
// EOF, no reset, which is what a partition looks like to a client.
func expectSilence(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	var b [64]byte
	n, err := c.Read(b[:])
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("expected silence, got %q, %v", b[:n], err)
	}
}

// expectReset checks that c fails with a TCP reset within a second.
func expectReset(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Second))
	var b [64]byte
	n, err := c.Read(b[:])
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("expected a reset, got %q, %v", b[:n], err)
	}
}

// settled waits until the proxy has counted n bytes each way: it counts a
// chunk after writing it, so an echo may reach the client first.
func settled(t *testing.T, p *Proxy, n int64) Stats {
	t.Helper()
	eventually(t, "the counters", func() bool { s := p.Stats(); return s.Upstream == n && s.Downstream == n })
	return p.Stats()
}

// eventually waits up to 5s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestPass(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e.addr)
	host, port, _ := net.SplitHostPort(p.Addr())
	if host != "127.0.0.1" || port != strconv.Itoa(p.Port()) || p.Port() == 0 {
		t.Fatalf("Addr %s, Port %d", p.Addr(), p.Port())
	}
	c := dial(t, p)
	write(t, c, "hello")
	expect(t, c, "hello")
	if s := settled(t, p, 5); s.Accepted != 1 {
		t.Fatalf("Accepted = %d, want 1", s.Accepted)
	}
	if n := p.Conns(); n != 1 {
		t.Fatalf("Conns = %d, want 1", n)
	}
	c.Close()
	eventually(t, "the connection to go", func() bool { return p.Conns() == 0 })
}

func TestBlackholeHoldsThenDelivers(t *testing.T) {
	for _, tc := range []struct {
		mode Mode
		// serverGets says whether the server receives the client's bytes
		// while held (only the reply is held).
		serverGets bool
	}{
		{Blackhole, false},
		{BlackholeUpstream, false},
		{BlackholeDownstream, true},
	} {
		for _, fresh := range []bool{false, true} {
			name := tc.mode.String() + "/open"
			if fresh {
				name = tc.mode.String() + "/new"
			}
			t.Run(name, func(t *testing.T) {
				e := startEcho(t)
				p := startProxy(t, e.addr)
				var c *net.TCPConn
				if fresh {
					p.Set(tc.mode)
					c = dial(t, p)
				} else {
					c = dial(t, p)
					write(t, c, "a")
					expect(t, c, "a")
					settled(t, p, 1)
					p.Set(tc.mode)
				}
				before := p.Stats().Upstream
				write(t, c, "ping")
				if tc.serverGets {
					eventually(t, "the server to get the bytes", func() bool { return p.Stats().Upstream == before+4 })
				}
				expectSilence(t, c, 200*time.Millisecond)
				if got := p.Stats().Upstream - before; !tc.serverGets && got != 0 {
					t.Fatalf("%d bytes reached the server", got)
				}
				if fresh {
					// A lost SYN: the server hears of the connection only
					// if client→server traffic passes.
					if got, want := e.accepted.Load(), map[bool]int64{false: 0, true: 1}[tc.serverGets]; got != want {
						t.Fatalf("server accepted %d connections, want %d", got, want)
					}
				}
				if n := p.Conns(); n != 1 {
					t.Fatalf("Conns = %d while held, want 1", n)
				}
				p.Set(Pass)
				expect(t, c, "ping")
				write(t, c, "more")
				expect(t, c, "more")
			})
		}
	}
}

func TestReset(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e.addr)
	open := dial(t, p)
	write(t, open, "a")
	expect(t, open, "a")

	p.Set(Reset)
	if n := p.Conns(); n != 0 {
		t.Fatalf("Conns = %d after reset", n)
	}
	expectReset(t, open)
	// The reset may come before the client's connect has returned.
	if c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second); err == nil {
		defer c.Close()
		expectReset(t, c)
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("dial while resetting: %v", err)
	}

	p.Set(Pass)
	c := dial(t, p)
	write(t, c, "back")
	expect(t, c, "back")
	if got := p.Stats().Accepted; got != 3 {
		t.Fatalf("Accepted = %d, want 3", got)
	}
}

func TestRetarget(t *testing.T) {
	first, second := startEcho(t), startEcho(t)
	p := startProxy(t, first.addr)
	open := dial(t, p)
	write(t, open, "a")
	expect(t, open, "a")

	p.Retarget(second.addr)
	if p.Target() != second.addr {
		t.Fatalf("Target = %s, want %s", p.Target(), second.addr)
	}
	expectReset(t, open)
	c := dial(t, p)
	write(t, c, "b")
	expect(t, c, "b")
	if first.accepted.Load() != 1 || second.accepted.Load() != 1 {
		t.Fatalf("accepted: first %d, second %d; want 1 and 1", first.accepted.Load(), second.accepted.Load())
	}
}

func TestSwitchAfter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dir    Direction
		mode   Mode
		writes []string // each written once the previous one was forwarded
		// upstream is how many bytes reach the server by the time the
		// trigger has fired; client what the client then receives.
		upstream int64
		client   string
	}{
		{name: "one read", dir: Upstream, mode: Blackhole, writes: []string{"aaa MARK bbb"}, upstream: 8},
		{name: "split over reads", dir: Upstream, mode: Blackhole, writes: []string{"aaa MA", "RK bbb"}, upstream: 8},
		{name: "first of two", dir: Upstream, mode: Blackhole, writes: []string{"x MARK y MARK z"}, upstream: 6},
		{name: "reply only", dir: Upstream, mode: BlackholeDownstream, writes: []string{"aaa MARK bbb"}, upstream: 12},
		{name: "downstream", dir: Downstream, mode: Blackhole, writes: []string{"aaa MARK bbb"}, upstream: 12, client: "aaa MARK"},
		{name: "reset", dir: Upstream, mode: Reset, writes: []string{"aaa MARK bbb"}, upstream: 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEcho(t)
			p := startProxy(t, e.addr)
			c := dial(t, p)
			// Bytes before arming do not count.
			write(t, c, "MARK")
			expect(t, c, "MARK")
			base := settled(t, p, 4)

			fired := p.SwitchAfter(tc.dir, []byte("MARK"), tc.mode)
			// rest is what the client has still to receive.
			rest := ""
			for i, w := range tc.writes {
				write(t, c, w)
				rest += w
				if i < len(tc.writes)-1 {
					// Make the next part a separate read, and take the
					// echo of this one, which passes before the switch.
					expect(t, c, w)
					rest = rest[len(w):]
				}
			}
			select {
			case <-fired:
			case <-time.After(5 * time.Second):
				t.Fatal("trigger did not fire")
			}
			eventually(t, "the bytes before the switch", func() bool { return p.Stats().Upstream-base.Upstream >= tc.upstream })
			if tc.client != "" {
				expect(t, c, tc.client)
			}
			if tc.mode == Reset {
				expectReset(t, c)
				if got := p.Stats().Upstream - base.Upstream; got != tc.upstream {
					t.Fatalf("%d bytes reached the server, want %d", got, tc.upstream)
				}
				return
			}
			expectSilence(t, c, 100*time.Millisecond)
			if got := p.Stats().Upstream - base.Upstream; got != tc.upstream {
				t.Fatalf("%d bytes reached the server, want %d", got, tc.upstream)
			}
			if m := p.Mode(); m != tc.mode {
				t.Fatalf("mode %v after the trigger, want %v", m, tc.mode)
			}
			p.Set(Pass)
			expect(t, c, rest[len(tc.client):])
		})
	}
}

func TestCloseEndsConnections(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e.addr)
	c := dial(t, p)
	p.Set(Blackhole)
	write(t, c, "held")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := c.Read(make([]byte, 8)); err == nil {
		t.Fatalf("read %d bytes after Close", n)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("the proxy still accepts after Close")
	}
}

func TestPGQuery(t *testing.T) {
	got := PGQuery("COMMIT")
	want := []byte{'Q', 0, 0, 0, 11, 'C', 'O', 'M', 'M', 'I', 'T', 0}
	if !bytes.Equal(got, want) {
		t.Fatalf("PGQuery = %v, want %v", got, want)
	}
}
