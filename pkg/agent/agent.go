/*
Copyright The Switchboard Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package agent is switchboard-agent: it runs next to a member cluster
// that the hub cannot dial, holds a tunnel out to the hub's kube-apiserver
// (clusters/<name>/attach, which the hub forwards to switchboard), and
// connects each stream switchboard opens in it to one fixed address, its
// member's API server. It relays bytes only: the streams carry
// switchboard's TLS connections to the member, which the agent cannot
// read, and it never dials anything but that one address.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/switchboard-io/switchboard/pkg/tunnel"
)

// Config configures an Agent.
type Config struct {
	// Hub reaches the hub's kube-apiserver as the agent's hub identity.
	Hub *rest.Config
	// Cluster is the name of the member's Cluster on the hub.
	Cluster string
	// MemberAddress is the host:port of the member's API server: the one
	// address the agent ever dials.
	MemberAddress string
	// DialTimeout bounds connecting to the hub and to the member.
	DialTimeout time.Duration
	// KeepAlive is how the agent finds a dead tunnel; zero is
	// tunnel.DefaultKeepAlive.
	KeepAlive tunnel.KeepAlive
	// Backoff spaces reconnects: it starts at Backoff.Duration, grows by
	// Factor up to Cap, with Jitter. Zero is DefaultBackoff.
	Backoff wait.Backoff
	// ServerCount is how many tunnels the agent holds, each to a different
	// switchboard replica: the number of replicas, so that a request that
	// lands on any of them finds a tunnel there. Zero is one.
	ServerCount int
}

// DefaultBackoff reconnects after one to one and a half seconds, then
// doubles the wait up to 20s, each wait jittered by up to half again: the
// agents of many members that lost the hub at once do not come back in step.
var DefaultBackoff = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.5, Steps: 1 << 30, Cap: 20 * time.Second}

// Agent holds the tunnel of one member.
type Agent struct {
	cfg    Config
	mux    *yamux.Config
	dialer *net.Dialer
	// dial connects to the hub; tests replace it.
	dial func(ctx context.Context) (io.ReadWriteCloser, string, error)

	// relays counts the streams being relayed, for tests.
	relays sync.WaitGroup

	mu sync.Mutex
	// servers are the replicas the agent holds a tunnel to, by ID, with
	// how many it holds to each (more than one only for a replica that
	// names no ID).
	servers map[string]int
}

// errSameServer: the hub's Service sent a new tunnel to a replica that
// already has one of this agent's.
var errSameServer = errors.New("reached a switchboard replica that already holds one of this agent's tunnels")

// New checks the configuration and returns an Agent.
func New(cfg Config) (*Agent, error) {
	var errs []error
	if cfg.Cluster == "" {
		errs = append(errs, errors.New("the name of the member's Cluster on the hub is required"))
	}
	if _, _, err := net.SplitHostPort(cfg.MemberAddress); err != nil {
		errs = append(errs, fmt.Errorf("the member's API server address %q must be host:port: %w", cfg.MemberAddress, err))
	}
	if cfg.Hub == nil {
		errs = append(errs, errors.New("a configuration for the hub is required"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.KeepAlive == (tunnel.KeepAlive{}) {
		cfg.KeepAlive = tunnel.DefaultKeepAlive
	}
	if cfg.Backoff == (wait.Backoff{}) {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.ServerCount <= 0 {
		cfg.ServerCount = 1
	}
	a := &Agent{
		servers: map[string]int{},
		cfg:     cfg,
		mux:     tunnel.MuxConfig(cfg.KeepAlive),
		dialer:  &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
	}
	hub, err := newHubDialer(cfg.Hub, cfg.Cluster, a.dialer)
	if err != nil {
		return nil, err
	}
	a.dial = hub.connect
	return a, nil
}

// Connected says whether the agent holds a tunnel now.
func (a *Agent) Connected() bool { return a.Tunnels() > 0 }

// Tunnels is how many tunnels the agent holds now.
func (a *Agent) Tunnels() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.servers {
		n += c
	}
	return n
}

// claim records a tunnel to server, unless the agent holds one there.
// A replica that names no ID is never taken for another.
func (a *Agent) claim(server string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if server != "" && a.servers[server] > 0 {
		return false
	}
	a.servers[server]++
	return true
}

func (a *Agent) release(server string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.servers[server]--; a.servers[server] <= 0 {
		delete(a.servers, server)
	}
}

// Run holds ServerCount tunnels until ctx ends, each to a different
// replica, reconnecting with backoff and jitter whenever one drops or
// cannot be opened. It returns when ctx ends and every stream it relays
// has ended.
func (a *Agent) Run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithValues("cluster", a.cfg.Cluster)
	ctx = klog.NewContext(ctx, logger)
	defer a.relays.Wait()
	var wg sync.WaitGroup
	for range a.cfg.ServerCount {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.holdOne(ctx)
		}()
	}
	wg.Wait()
}

// sameServerWarning is how many tries in a row that reach replicas this
// agent holds already make it say so.
const sameServerWarning = 5

// holdOne holds one tunnel, to a replica none of the others holds.
func (a *Agent) holdOne(ctx context.Context) {
	logger := klog.FromContext(ctx)
	backoff := a.cfg.Backoff
	// same spaces the tries that keep reaching replicas this agent holds
	// already: soon at first, since the hub's Service picks a replica for
	// each connection, then as slowly as failures, for when there are
	// fewer replicas than --server-count.
	same, sameInARow := a.cfg.Backoff, 0
	for ctx.Err() == nil {
		start := time.Now()
		err := a.serveOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		var pause time.Duration
		if errors.Is(err, errSameServer) {
			sameInARow++
			pause = same.Step()
			if sameInARow == sameServerWarning {
				logger.Info("Every try reaches a switchboard replica this agent holds a tunnel to already: are there fewer replicas than --server-count?",
					"serverCount", a.cfg.ServerCount, "tunnels", a.Tunnels(), "tries", sameInARow)
			} else {
				logger.V(2).Info("Reached a replica this agent already holds a tunnel to; trying for another", "in", pause.Round(time.Millisecond))
			}
		} else {
			same, sameInARow = a.cfg.Backoff, 0
			if time.Since(start) > backoff.Cap {
				// It held a while: the next failure starts from the bottom.
				backoff = a.cfg.Backoff
			}
			pause = backoff.Step()
			logger.Info("The tunnel is down; reconnecting", "err", err, "in", pause.Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

// serveOnce opens one tunnel and relays its streams until it ends.
func (a *Agent) serveOnce(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	conn, server, err := a.dial(ctx)
	if err != nil {
		return err
	}
	if !a.claim(server) {
		_ = conn.Close()
		return errSameServer
	}
	defer a.release(server)
	session, err := yamux.Server(tunnel.Coalesce(conn), a.mux)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("starting the tunnel: %w", err)
	}
	logger.Info("Connected to switchboard through the hub", "server", server, "member", a.cfg.MemberAddress, "tunnels", a.Tunnels())
	stop := context.AfterFunc(ctx, func() { _ = session.Close() })
	defer stop()
	// Ends the relays of this tunnel when it ends: a member connection
	// that would wait for the member to close first must not outlive it.
	tunnelCtx, endTunnel := context.WithCancel(ctx)
	defer endTunnel()
	for {
		stream, err := session.AcceptStream()
		if err != nil {
			_ = session.Close()
			if errors.Is(err, io.EOF) || errors.Is(err, yamux.ErrSessionShutdown) {
				return errors.New("switchboard closed the tunnel")
			}
			return fmt.Errorf("the tunnel ended: %w", err)
		}
		a.relays.Add(1)
		go func() {
			defer a.relays.Done()
			a.relay(tunnelCtx, stream)
		}()
	}
}

// relay connects a stream to the member's API server and copies bytes
// both ways until both sides are done.
func (a *Agent) relay(ctx context.Context, stream *yamux.Stream) {
	member, err := a.dialer.DialContext(ctx, "tcp", a.cfg.MemberAddress)
	if err != nil {
		klog.FromContext(ctx).Info("Cannot connect to the member's API server", "member", a.cfg.MemberAddress, "err", err)
		// Closing the stream at once tells switchboard the member
		// could not be reached.
		_ = stream.Close()
		return
	}
	stop := context.AfterFunc(ctx, func() { _ = member.Close() })
	defer stop()
	Splice(stream, member)
}

// halfCloseGrace is how long one direction of a relay may go on once the
// other has ended. The streams carry TLS connections, whose writing side
// ends only when the whole connection closes, so the other side follows
// within moments; a member that never does is cut off after this.
const halfCloseGrace = time.Minute

// Splice copies between a and b until both directions end, passing on
// each side's end of writing to the other, then closes both.
func Splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	go func() { copyHalf(a, b); done <- struct{}{} }()
	go func() { copyHalf(b, a); done <- struct{}{} }()
	<-done
	deadline := time.Now().Add(halfCloseGrace)
	_ = a.SetDeadline(deadline)
	_ = b.SetDeadline(deadline)
	<-done
	_ = a.Close()
	_ = b.Close()
}

// copyHalf copies src to dst, then ends dst's writing side. When the copy
// fails rather than ends, both connections close, so the other direction
// ends too.
func copyHalf(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err != nil {
		_ = dst.Close()
		_ = src.Close()
		return
	}
	closeWrite(dst)
}

// closeWrite ends the writing side of c: a TCP half-close, or a yamux
// stream's Close, which ends only its writing side.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
