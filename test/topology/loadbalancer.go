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

package topology

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// LoadBalancer puts several switchboard replicas behind one address the
// hub's aggregator can reach, as a Service and kube-proxy do in a real
// cluster. It works at the TCP level: TLS passes through untouched, so the
// aggregator still verifies each replica's serving certificate against the
// Service name, end to end.
//
// Why a load balancer in the test process, and not the hub's own Service
// machinery? The aggregator dials one host:port per APIService. A ClusterIP
// Service with endpoints would need the replicas' addresses in an
// EndpointSlice, and the API server refuses loopback addresses there
// (127.0.0.0/8 is forbidden for endpoints), while the topology runs
// everything on loopback. An ExternalName Service resolves through DNS, so
// several addresses behind one name would mean editing /etc/hosts, which is
// machine-wide and outlives the test. A listener on 127.0.0.1 that the
// existing ExternalName Service (localhost) reaches needs no privileges,
// changes nothing outside the test, and lets the test see which replica
// each connection went to.
//
// Each accepted connection goes to the next backend in turn; a backend that
// refuses the connection (or does not answer within the dial timeout) is
// skipped for that connection. Bytes are piped both ways until either side
// closes. A connection stays with its backend for its whole life: when that
// backend dies, the connection closes and the client's next connection
// goes elsewhere.
type LoadBalancer struct {
	listener    net.Listener
	backends    []string
	dialTimeout time.Duration

	mu     sync.Mutex
	next   int
	stats  map[string]*BackendStats
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// BackendStats count what the load balancer did with one backend.
type BackendStats struct {
	// Accepted is how many connections went to the backend.
	Accepted int
	// Active is how many of them are still open.
	Active int
	// Refused is how many times dialing it failed, so that it was skipped.
	Refused int
}

// NewLoadBalancer listens on a free port of 127.0.0.1 and spreads
// connections over backends (host:port).
func NewLoadBalancer(backends ...string) (*LoadBalancer, error) {
	return ListenLoadBalancer("127.0.0.1:0", backends...)
}

// ListenLoadBalancer is NewLoadBalancer listening on address (host:port)
// instead of a free port of 127.0.0.1. With one backend it is a TCP
// forwarder: topology forward runs one.
func ListenLoadBalancer(address string, backends ...string) (*LoadBalancer, error) {
	if len(backends) == 0 {
		return nil, errors.New("a load balancer needs at least one backend")
	}
	l, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	lb := &LoadBalancer{
		listener:    l,
		backends:    append([]string(nil), backends...),
		dialTimeout: 2 * time.Second,
		stats:       map[string]*BackendStats{},
		conns:       map[net.Conn]struct{}{},
	}
	for _, b := range backends {
		lb.stats[b] = &BackendStats{}
	}
	lb.wg.Add(1)
	go lb.serve()
	return lb, nil
}

// Addr is where the load balancer listens, 127.0.0.1:<port>.
func (lb *LoadBalancer) Addr() string { return lb.listener.Addr().String() }

// Port is the port the load balancer listens on.
func (lb *LoadBalancer) Port() int { return lb.listener.Addr().(*net.TCPAddr).Port }

// Stats returns a copy of the per-backend counters.
func (lb *LoadBalancer) Stats() map[string]BackendStats {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	out := make(map[string]BackendStats, len(lb.stats))
	for b, s := range lb.stats {
		out[b] = *s
	}
	return out
}

// Busiest returns the backend with the most open connections: the one the
// clients use right now. ok is false when no connection is open.
func (lb *LoadBalancer) Busiest() (backend string, active int, ok bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for _, b := range lb.backends {
		if s := lb.stats[b]; s.Active > active {
			backend, active = b, s.Active
		}
	}
	return backend, active, active > 0
}

// Close stops listening and closes every open connection.
func (lb *LoadBalancer) Close() error {
	lb.mu.Lock()
	lb.closed = true
	for c := range lb.conns {
		_ = c.Close()
	}
	lb.mu.Unlock()
	err := lb.listener.Close()
	lb.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (lb *LoadBalancer) serve() {
	defer lb.wg.Done()
	for {
		client, err := lb.listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient accept error (too many open files, ...): go on.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !lb.track(client) {
			_ = client.Close()
			return
		}
		lb.wg.Add(1)
		go func() {
			defer lb.wg.Done()
			lb.handle(client)
		}()
	}
}

// track records an open connection so that Close can close it; false when
// the load balancer is closing.
func (lb *LoadBalancer) track(c net.Conn) bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return false
	}
	lb.conns[c] = struct{}{}
	return true
}

func (lb *LoadBalancer) untrack(c net.Conn) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	delete(lb.conns, c)
}

// pick returns the backends in the order to try for one connection: the
// next in turn first, then the others.
func (lb *LoadBalancer) pick() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	start := lb.next
	lb.next = (lb.next + 1) % len(lb.backends)
	order := make([]string, 0, len(lb.backends))
	for i := range lb.backends {
		order = append(order, lb.backends[(start+i)%len(lb.backends)])
	}
	return order
}

func (lb *LoadBalancer) count(backend string, fn func(*BackendStats)) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	fn(lb.stats[backend])
}

func (lb *LoadBalancer) handle(client net.Conn) {
	defer lb.untrack(client)
	defer func() { _ = client.Close() }()
	var backend net.Conn
	var chosen string
	for _, b := range lb.pick() {
		c, err := net.DialTimeout("tcp", b, lb.dialTimeout)
		if err != nil {
			lb.count(b, func(s *BackendStats) { s.Refused++ })
			continue
		}
		backend, chosen = c, b
		break
	}
	if backend == nil {
		return // every backend is down: the client sees the connection close
	}
	if !lb.track(backend) {
		_ = backend.Close()
		return
	}
	defer lb.untrack(backend)
	defer func() { _ = backend.Close() }()
	lb.count(chosen, func(s *BackendStats) { s.Accepted++; s.Active++ })
	defer lb.count(chosen, func(s *BackendStats) { s.Active-- })

	done := make(chan struct{})
	go func() {
		defer close(done)
		// Client to backend. When the client stops sending, tell the
		// backend, and keep reading its answer.
		_, _ = io.Copy(backend, client)
		closeWrite(backend)
	}()
	// Backend to client. When the backend goes (it exited, or closed the
	// connection), the client must see it at once, so that its next
	// request takes a new connection to a live replica: close both.
	_, _ = io.Copy(client, backend)
	_ = client.Close()
	_ = backend.Close()
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		return
	}
	_ = c.Close()
}

// String describes the load balancer for logs.
func (lb *LoadBalancer) String() string {
	return fmt.Sprintf("load balancer %s -> %v", lb.Addr(), lb.backends)
}

// hostPort joins an address and a port.
func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
