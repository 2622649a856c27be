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
	dial func(ctx context.Context) (net.Conn, string, error)

	// relays counts the streams being relayed, for tests.
	relays sync.WaitGroup
	// stats
	mu        sync.Mutex
	connected bool
}

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
	a := &Agent{
		cfg:    cfg,
		mux:    tunnel.MuxConfig(cfg.KeepAlive),
		dialer: &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
	}
	hub, err := newHubDialer(cfg.Hub, cfg.Cluster, a.dialer)
	if err != nil {
		return nil, err
	}
	a.dial = hub.connect
	return a, nil
}

// Connected says whether the agent holds a tunnel now.
func (a *Agent) Connected() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.connected
}

func (a *Agent) setConnected(v bool) {
	a.mu.Lock()
	a.connected = v
	a.mu.Unlock()
}

// Run holds the tunnel until ctx ends, reconnecting with backoff and
// jitter whenever it drops or cannot be opened. It returns when ctx ends
// and every stream it relays has ended.
func (a *Agent) Run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithValues("cluster", a.cfg.Cluster)
	ctx = klog.NewContext(ctx, logger)
	defer a.relays.Wait()
	backoff := a.cfg.Backoff
	for ctx.Err() == nil {
		start := time.Now()
		err := a.serveOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > backoff.Cap {
			// It held a while: the next failure starts from the bottom.
			backoff = a.cfg.Backoff
		}
		wait := backoff.Step()
		logger.Info("The tunnel is down; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
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
	session, err := yamux.Server(conn, a.mux)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("starting the tunnel: %w", err)
	}
	logger.Info("Connected to switchboard through the hub", "server", server, "member", a.cfg.MemberAddress)
	a.setConnected(true)
	defer a.setConnected(false)
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

// Splice copies between a and b until both directions end, passing on
// each side's end of writing to the other, then closes both.
func Splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); copyHalf(a, b) }()
	go func() { defer wg.Done(); copyHalf(b, a) }()
	wg.Wait()
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
