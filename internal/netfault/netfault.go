// Package netfault is a TCP proxy for fault-injection tests. It sits between
// a client and a server on 127.0.0.1 and, at any moment, passes bytes
// through, resets every connection, or holds bytes the way a network
// partition does: silently, with no error on either side.
//
//	p, err := netfault.Start(server.Addr())
//	defer p.Close()
//	conn := connect(p.Addr())   // the client talks to the proxy
//	p.Set(netfault.Blackhole)   // a partition: queries hang
//	p.Set(netfault.Pass)        // it heals: held bytes are delivered, in order
//
// A mode applies at once to open connections and to new ones. To fault at an
// exact point of a conversation, arm a trigger: it switches the mode right
// after the bytes matching a pattern are forwarded, before anything else
// passes in either direction:
//
//	fired := p.SwitchAfter(netfault.Upstream, netfault.PGQuery("COMMIT"), netfault.Blackhole)
//
// The server then receives the COMMIT and commits, and the client never
// hears back until the test heals the proxy.
//
// The proxy is not a real network: its kernel acknowledges what the client
// and the server send, so TCP-level detection (keepalive probes,
// tcp_user_timeout, retransmission time-outs) never fires during a
// blackhole. Only timeouts in the programs themselves (statement_timeout,
// wal_sender_timeout, client deadlines) notice the partition.
package netfault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Mode says what the proxy does with connections and bytes.
type Mode int32

const (
	// Pass forwards bytes both ways, delivering anything held before.
	Pass Mode = iota
	// Reset aborts every open connection with a TCP reset (RST) on both
	// sides, and resets each new one as soon as it is accepted. The kernel
	// completes the handshake before the proxy sees a connection, so a new
	// client's connect succeeds and its first read or write fails with
	// "connection reset by peer" rather than "connection refused".
	Reset
	// Blackhole holds bytes in both directions: connections stay open and
	// nothing errors, but nothing is delivered, not even a FIN or a reset.
	// New connections are accepted but the server is not dialled until the
	// partition heals, as a SYN would be lost. Switching back to Pass
	// delivers the held bytes in order, like a partition that heals before
	// TCP gives up retransmitting.
	Blackhole
	// BlackholeUpstream holds client→server bytes only; like Blackhole, it
	// does not dial the server for new connections until it heals.
	BlackholeUpstream
	// BlackholeDownstream holds server→client bytes only: the server
	// receives and acts, the client never hears back.
	BlackholeDownstream
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Reset:
		return "reset"
	case Blackhole:
		return "blackhole"
	case BlackholeUpstream:
		return "blackhole-upstream"
	case BlackholeDownstream:
		return "blackhole-downstream"
	}
	return fmt.Sprintf("Mode(%d)", int32(m))
}

// holds reports whether m keeps bytes flowing in direction d from being
// delivered.
func (m Mode) holds(d Direction) bool {
	switch m {
	case Reset, Blackhole:
		return true
	case BlackholeUpstream:
		return d == Upstream
	case BlackholeDownstream:
		return d == Downstream
	}
	return false
}

// Direction is one of the two byte streams of a connection.
type Direction int

const (
	// Upstream is the client→server stream.
	Upstream Direction = iota
	// Downstream is the server→client stream.
	Downstream
)

func (d Direction) String() string {
	if d == Upstream {
		return "upstream"
	}
	return "downstream"
}

// Stats are counters over the proxy's life.
type Stats struct {
	Accepted   int64 // TCP connections accepted, including those reset at once
	Upstream   int64 // bytes delivered to the server
	Downstream int64 // bytes delivered to the client
}

// dialTimeout bounds connecting to the target; the target is local, so a
// slow dial means it is gone.
const dialTimeout = 5 * time.Second

// Proxy forwards connections from its own 127.0.0.1 port to a target.
type Proxy struct {
	target string
	ln     *net.TCPListener

	mu       sync.Mutex
	mode     Mode
	changed  chan struct{} // closed and replaced at every mode change, so waiters wake
	links    map[*link]struct{}
	triggers []*trigger
	closed   bool

	accepted atomic.Int64
	bytes    [2]atomic.Int64 // by Direction

	wg sync.WaitGroup
}

// Start listens on a port of 127.0.0.1 chosen by the kernel and forwards
// every connection to target (host:port), in mode Pass.
func Start(target string) (*Proxy, error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("netfault: listen: %w", err)
	}
	p := &Proxy{
		target:  target,
		ln:      ln,
		changed: make(chan struct{}),
		links:   map[*link]struct{}{},
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the proxy's host:port, for clients to connect to instead of
// the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port returns the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// Retarget points the proxy at another server, the way a failover moves a
// service address (a virtual IP, a DNS name) to the promoted standby:
// open connections are reset, as the old server's are gone anyway, and new
// ones reach target. The mode is kept.
func (p *Proxy) Retarget(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
	for l := range p.links {
		l.abort()
		delete(p.links, l)
	}
}

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Set switches the mode, for open connections and new ones. Switching to
// Reset has aborted every open connection when Set returns.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setLocked(m)
}

func (p *Proxy) setLocked(m Mode) {
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
	if m == Reset {
		for l := range p.links {
			l.abort()
			delete(p.links, l)
		}
	}
}

// Conns returns the number of open connections.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Accepted:   p.accepted.Load(),
		Upstream:   p.bytes[Upstream].Load(),
		Downstream: p.bytes[Downstream].Load(),
	}
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines. Held bytes are dropped.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	links := p.links
	p.links = map[*link]struct{}{}
	p.mu.Unlock()
	err := p.ln.Close()
	for l := range links {
		l.close()
	}
	p.wg.Wait()
	return err
}

// trigger is an armed SwitchAfter.
type trigger struct {
	dir     Direction
	pattern []byte
	mode    Mode
	fired   chan struct{}
}

// SwitchAfter arms a one-shot trigger: the first time the stream in
// direction d of any connection contains pattern, the proxy forwards the
// bytes up to the end of the pattern, having switched to mode m before
// writing them, so that everything after them in either direction follows
// m. With m = Blackhole the server gets the pattern but its reply is held,
// however fast it answers. Only bytes delivered after arming count, and a
// pattern split over several reads is found. The returned channel is closed
// when the trigger fires.
//
// For m = Reset, both directions are held from the match until the pattern
// is written, then every connection is reset.
func (p *Proxy) SwitchAfter(d Direction, pattern []byte, m Mode) <-chan struct{} {
	if len(pattern) == 0 {
		panic("netfault: SwitchAfter with an empty pattern")
	}
	t := &trigger{dir: d, pattern: bytes.Clone(pattern), mode: m, fired: make(chan struct{})}
	p.mu.Lock()
	p.triggers = append(p.triggers, t)
	p.mu.Unlock()
	return t.fired
}

// PGQuery returns a PostgreSQL simple-protocol Query message ('Q', length,
// the text, a zero byte) carrying sql. Clients send statements without
// parameters this way: pgx's Exec with no arguments, psql, libpq's PQexec.
// Note that pgx's Tx.Commit sends "commit" in lower case.
func PGQuery(sql string) []byte {
	msg := make([]byte, 0, 1+4+len(sql)+1)
	msg = append(msg, 'Q')
	msg = binary.BigEndian.AppendUint32(msg, uint32(4+len(sql)+1))
	msg = append(msg, sql...)
	return append(msg, 0)
}

// link is one proxied connection.
type link struct {
	client *net.TCPConn
	done   chan struct{} // closed when the link is torn down

	mu     sync.Mutex
	server *net.TCPConn // nil until dialled
	dead   bool
}

// setServer records the dialled server side, unless the link was torn down
// meanwhile.
func (l *link) setServer(c *net.TCPConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		return false
	}
	l.server = c
	return true
}

// abort tears the link down with a reset on both sides: SO_LINGER 0 makes
// close send RST instead of FIN.
func (l *link) abort() { l.teardown(true) }

// close tears the link down with an ordinary close.
func (l *link) close() { l.teardown(false) }

func (l *link) teardown(reset bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		return
	}
	l.dead = true
	for _, c := range []*net.TCPConn{l.client, l.server} {
		if c == nil {
			continue
		}
		if reset {
			c.SetLinger(0)
		}
		c.Close()
	}
	close(l.done)
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or similar: wait rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.accepted.Add(1)
		l := &link{client: c, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed || p.mode == Reset {
			p.mu.Unlock()
			l.abort()
			continue
		}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// serve dials the target for one accepted connection and runs its two
// pumps until both streams have ended.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer p.forget(l)
	// Connecting is client→server traffic too: while it is held, so is the
	// dial, and the client's first bytes wait in the kernel.
	if _, _, ok := p.admit(l, Upstream, nil, nil); !ok {
		return
	}
	c, err := net.DialTimeout("tcp", p.Target(), dialTimeout)
	if err != nil {
		// The target refused: pass that on as a reset, the nearest thing
		// the client can see.
		l.abort()
		return
	}
	if !l.setServer(c.(*net.TCPConn)) {
		c.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.pump(l, Downstream, l.server, l.client)
	}()
	p.pump(l, Upstream, l.client, l.server)
	wg.Wait()
	l.close()
}

func (p *Proxy) forget(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// pump copies one direction of a link. Each chunk read waits in admit until
// the mode lets it through; while it waits the pump reads nothing more, so
// later bytes stay in the kernel's buffers and the sender eventually blocks,
// as it would behind a partition. The end of the stream (FIN or reset) is
// held like data.
func (p *Proxy) pump(l *link, d Direction, src, dst *net.TCPConn) {
	buf := make([]byte, 32<<10)
	var tail []byte // the last bytes delivered, for patterns split over reads
	for {
		n, rerr := src.Read(buf)
		chunk := buf[:n]
		for len(chunk) > 0 {
			k, resetAfter, ok := p.admit(l, d, chunk, &tail)
			if !ok {
				return
			}
			_, err := dst.Write(chunk[:k])
			if err == nil {
				p.bytes[d].Add(int64(k))
			}
			if resetAfter {
				// This ends the link too: the next Read fails and admit
				// sees it torn down.
				p.Set(Reset)
			} else if err != nil {
				l.abort()
				return
			}
			chunk = chunk[k:]
		}
		if rerr != nil {
			if _, _, ok := p.admit(l, d, nil, nil); !ok {
				return
			}
			if rerr == io.EOF {
				dst.CloseWrite()
				return
			}
			l.abort()
			return
		}
	}
}

// admit waits until the mode lets direction d through and returns how many
// leading bytes of chunk may be delivered now: all of them, or those up to
// the end of an armed trigger's pattern, in which case the mode has already
// been switched. A trigger to Reset holds both directions instead and asks
// the caller, with resetAfter, to reset once it has written the n bytes, so
// that the server gets them first. ok is false when the link was torn down.
// tail (nil when chunk is) carries the end of earlier chunks across calls.
func (p *Proxy) admit(l *link, d Direction, chunk []byte, tail *[]byte) (n int, resetAfter, ok bool) {
	p.mu.Lock()
	for p.mode.holds(d) {
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-l.done:
			return 0, false, false
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	select {
	case <-l.done:
		return 0, false, false
	default:
	}
	if len(chunk) == 0 {
		return 0, false, true
	}
	n = len(chunk)
	var hit *trigger
	keep := 0
	for _, t := range p.triggers {
		if t.dir != d {
			continue
		}
		keep = max(keep, len(t.pattern)-1)
		if end, found := matchEnd(*tail, chunk, t.pattern); found && (hit == nil || end < n) {
			n, hit = end, t
		}
	}
	if hit != nil {
		p.triggers = slices.DeleteFunc(p.triggers, func(t *trigger) bool { return t == hit })
		close(hit.fired)
		if hit.mode == Reset {
			p.setLocked(Blackhole)
			resetAfter = true
		} else {
			p.setLocked(hit.mode)
		}
	}
	*tail = keepTail(*tail, chunk[:n], keep)
	return n, resetAfter, true
}

// matchEnd finds pattern in the stream tail+chunk, counting only matches
// that end inside chunk (earlier ones were seen, or came before arming), and
// returns the end of the first such match as an offset into chunk.
func matchEnd(tail, chunk, pattern []byte) (int, bool) {
	s := append(append(make([]byte, 0, len(tail)+len(chunk)), tail...), chunk...)
	from := max(0, len(tail)-len(pattern)+1)
	i := bytes.Index(s[from:], pattern)
	if i < 0 {
		return 0, false
	}
	return from + i + len(pattern) - len(tail), true
}

// keepTail returns the last keep bytes of tail+delivered, reusing tail.
func keepTail(tail, delivered []byte, keep int) []byte {
	if keep == 0 {
		return tail[:0]
	}
	tail = append(tail, delivered...)
	if len(tail) > keep {
		tail = append(tail[:0], tail[len(tail)-keep:]...)
	}
	return tail
}
