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

package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/reach"
)

// Config configures a Server.
type Config struct {
	// ID names this replica to agents, in the 101 answer.
	ID string
	// KeepAlive is how this end finds a dead tunnel; zero is DefaultKeepAlive.
	KeepAlive KeepAlive
	// OnChange, when set, is called with the cluster's name each time an
	// agent of it connects or goes away: the health prober looks again.
	OnChange func(cluster string)
}

// Server holds the tunnels that agents hold to this replica, by cluster.
type Server struct {
	id        string
	mux       *yamux.Config
	onChange  func(cluster string)
	now       func() time.Time
	started   time.Time
	stopped   chan struct{}
	closeOnce sync.Once

	mu sync.Mutex
	// tunnels are the live tunnels of each cluster, oldest first.
	tunnels map[string][]*tunnel
	// lost is when the last tunnel of a cluster ended.
	lost map[string]time.Time
	// wg counts the handlers serving tunnels.
	wg sync.WaitGroup
}

// tunnel is one agent's connection.
type tunnel struct {
	cluster   string
	session   *yamux.Session
	connected time.Time
	// forgotten: Forget dropped the tunnel with its Cluster's series, so
	// its streams no longer count in them.
	forgotten atomic.Bool
}

// NewServer returns a Server with no tunnels.
func NewServer(cfg Config) *Server {
	if cfg.KeepAlive == (KeepAlive{}) {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func(string) {}
	}
	RegisterMetrics()
	now := time.Now
	return &Server{
		id:       cfg.ID,
		mux:      MuxConfig(cfg.KeepAlive),
		onChange: cfg.OnChange,
		now:      now,
		started:  now(),
		stopped:  make(chan struct{}),
		tunnels:  map[string][]*tunnel{},
		lost:     map[string]time.Time{},
	}
}

// Close ends every tunnel and refuses new ones; the agents reconnect, to
// another replica if there is one. It waits for the handlers to return.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.stopped)
		s.mu.Unlock()
	})
	s.wg.Wait()
}

// enter counts a handler in, unless the Server is closed. Counting in
// under the lock that Close closes stopped under, no handler is counted
// in once Close waits.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stopped:
		return false
	default:
	}
	s.wg.Add(1)
	return true
}

// Connected says whether an agent of the cluster holds a tunnel to this
// replica, and since when it has or has not: the oldest live tunnel's
// start, or when the last one ended, or, if none ever came, when this
// replica started (never is then true).
func (s *Server) Connected(cluster string) (connected bool, since time.Time, never bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ts := s.tunnels[cluster]; len(ts) > 0 {
		return true, ts[0].connected, false
	}
	if lost, ok := s.lost[cluster]; ok {
		return false, lost, false
	}
	return false, s.started, true
}

// Dial opens a stream to the member through the newest tunnel of the
// cluster. The agent connects the stream to its member's API server.
func (s *Server) Dial(ctx context.Context, cluster string) (net.Conn, error) {
	for {
		t := s.newest(cluster)
		if t == nil {
			connected, since, never := s.Connected(cluster)
			if connected {
				// Its tunnels died and their handlers have yet to drop them.
				since, never = s.now(), false
			}
			return nil, &reach.NoAgentError{Cluster: cluster, Since: since, Never: never}
		}
		stream, err := openStream(ctx, t.session)
		if err == nil {
			record(cluster, func() {
				streamsOpened.WithLabelValues(cluster).Inc()
				streamsOpen.WithLabelValues(cluster).Inc()
			})
			return &memberConn{Conn: stream, cluster: cluster, tunnel: t}, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		if !t.session.IsClosed() {
			return nil, fmt.Errorf("opening a stream to cluster %q through its tunnel: %w", cluster, err)
		}
		// The tunnel died under us; its handler drops it. Try the next.
		s.drop(t)
	}
}

// openStream opens a stream, giving up when ctx ends. yamux blocks in
// OpenStream only while the agent has not acknowledged many earlier ones.
func openStream(ctx context.Context, session *yamux.Session) (*yamux.Stream, error) {
	type opened struct {
		stream *yamux.Stream
		err    error
	}
	done := make(chan opened, 1)
	go func() {
		stream, err := session.OpenStream()
		done <- opened{stream, err}
	}()
	select {
	case o := <-done:
		return o.stream, o.err
	case <-ctx.Done():
		go func() {
			if o := <-done; o.stream != nil {
				_ = o.stream.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func (s *Server) newest(cluster string) *tunnel {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.tunnels[cluster]
	for i := len(ts) - 1; i >= 0; i-- {
		if !ts[i].session.IsClosed() {
			return ts[i]
		}
	}
	return nil
}

func (s *Server) add(t *tunnel) {
	s.mu.Lock()
	s.tunnels[t.cluster] = append(s.tunnels[t.cluster], t)
	// The gauge is set under the lock, so that concurrent changes set it
	// in the order they happened.
	count := len(s.tunnels[t.cluster])
	record(t.cluster, func() {
		agentsConnected.WithLabelValues(t.cluster).Set(float64(count))
		tunnelsOpened.WithLabelValues(t.cluster).Inc()
	})
	s.mu.Unlock()
	s.onChange(t.cluster)
}

// drop removes a tunnel; it reports whether it was there.
func (s *Server) drop(t *tunnel) bool {
	s.mu.Lock()
	ts := s.tunnels[t.cluster]
	found := false
	for i := range ts {
		if ts[i] == t {
			ts = append(ts[:i:i], ts[i+1:]...)
			found = true
			break
		}
	}
	if !found {
		// Forgotten with its Cluster, or dropped already: nothing to
		// remember.
		s.mu.Unlock()
		return false
	}
	if len(ts) == 0 {
		delete(s.tunnels, t.cluster)
		s.lost[t.cluster] = s.now()
	} else {
		s.tunnels[t.cluster] = ts
	}
	count := len(ts)
	record(t.cluster, func() { agentsConnected.WithLabelValues(t.cluster).Set(float64(count)) })
	s.mu.Unlock()
	s.onChange(t.cluster)
	return true
}

// Forget drops what the Server remembers of a deleted Cluster and ends its
// tunnels.
func (s *Server) Forget(cluster string) {
	s.mu.Lock()
	ts := s.tunnels[cluster]
	delete(s.tunnels, cluster)
	delete(s.lost, cluster)
	s.mu.Unlock()
	for _, t := range ts {
		t.forgotten.Store(true)
		_ = t.session.Close()
	}
	forgetMetrics(cluster)
}

// Serve takes an agent's upgrade request for the Cluster and holds the
// tunnel until the agent, or this replica, goes away. The caller has
// checked that the hub authorized the agent for this Cluster and that
// the Cluster is reached through a tunnel; valid, when set, checks the
// latter again once the tunnel is registered, so that a Cluster deleted or
// switched to Direct meanwhile (whose Forget came before the tunnel) does
// not keep it.
func (s *Server) Serve(w http.ResponseWriter, req *http.Request, name string, valid func() bool) error {
	if !httpstream.IsUpgradeRequest(req) || !strings.EqualFold(req.Header.Get("Upgrade"), Protocol) {
		return apierrors.NewBadRequest(fmt.Sprintf("clusters/%s/%s takes an upgrade to %s, as switchboard-agent sends; got Connection %q, Upgrade %q",
			name, Subresource, Protocol, req.Header.Get("Connection"), req.Header.Get("Upgrade")))
	}
	if !s.enter() {
		return apierrors.NewServiceUnavailable("this switchboard replica is shutting down; connect again")
	}
	defer s.wg.Done()
	hijacker, ok := w.(http.Hijacker)
	if !ok {
		return apierrors.NewBadRequest(fmt.Sprintf("clusters/%s/%s needs an HTTP/1.1 connection to upgrade; this request came over %s", name, Subresource, req.Proto))
	}
	conn, rw, err := hijacker.Hijack()
	if err != nil {
		return fmt.Errorf("taking over the connection of the agent of cluster %q: %w", name, err)
	}
	logger := klog.FromContext(req.Context())
	answer := "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + Protocol + "\r\n" + HeaderServerID + ": " + s.id + "\r\n\r\n"
	if _, err := rw.WriteString(answer); err != nil || rw.Flush() != nil {
		_ = conn.Close()
		logger.V(2).Info("An agent went away while its tunnel was set up", "cluster", klog.KRef("", name), "err", err)
		return nil
	}
	var raw io.ReadWriteCloser = conn
	if rw.Reader.Buffered() > 0 {
		raw = &bufferedConn{Conn: conn, reader: rw.Reader}
	}
	session, err := yamux.Client(Coalesce(raw), s.mux)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("starting the tunnel of cluster %q: %w", name, err)
	}
	// This replica going away ends the tunnel: the streams in it end with
	// it, and their callers see a closed connection at once rather than a
	// hang. (A GoAway first could wait a keepalive timeout on a stuck
	// agent.)
	go func() {
		select {
		case <-s.stopped:
			_ = session.Close()
		case <-session.CloseChan():
		}
	}()
	// An agent that already holds a tunnel to this replica closes the new
	// one when it reads the 101, before yamux runs on its end: a ping
	// tells such a tunnel from one the agent keeps, before any stream can
	// be sent into it.
	if _, err := session.Ping(); err != nil {
		_ = session.Close()
		logger.V(2).Info("An agent closed a new tunnel at once, holding one to this replica already", "cluster", klog.KRef("", name), "agent", agentOf(req))
		return nil
	}
	t := &tunnel{cluster: name, session: session, connected: s.now()}
	s.add(t)
	if valid != nil && !valid() {
		logger.Info("Ended a tunnel: its Cluster is gone or no longer reached through a tunnel", "cluster", klog.KRef("", name))
		_ = session.Close()
	}
	logger.Info("An agent connected", "cluster", klog.KRef("", name), "agent", agentOf(req))
	go refuseStreams(klog.FromContext(req.Context()), name, session)
	<-session.CloseChan()
	s.drop(t)
	logger.Info("An agent disconnected", "cluster", klog.KRef("", name), "agent", agentOf(req), "connectedFor", s.now().Sub(t.connected).Round(time.Second))
	return nil
}

// agentOf names the agent in logs: the user the hub authenticated.
func agentOf(req *http.Request) string {
	if u, ok := request.UserFrom(req.Context()); ok {
		return u.GetName()
	}
	return ""
}

// refuseStreams ends the tunnel when the agent opens a stream: only
// switchboard opens streams in a tunnel, and a stream nobody reads would
// hold whatever the agent writes into it.
func refuseStreams(logger klog.Logger, cluster string, session *yamux.Session) {
	stream, err := session.AcceptStream()
	if err != nil {
		return
	}
	logger.Info("Ended a tunnel: its agent opened a stream, which agents never do", "cluster", klog.KRef("", cluster))
	_ = stream.Close()
	_ = session.Close()
}

// memberConn is a stream to a member. If the agent closes it before a byte
// comes back, the agent could not connect to the member's API server.
type memberConn struct {
	net.Conn
	cluster   string
	tunnel    *tunnel
	read      bool
	closeOnce sync.Once
}

// CloseWrite ends the writing side of the stream only.
func (c *memberConn) CloseWrite() error { return c.Conn.Close() }

// Close ends the stream. A yamux stream's Close ends its writing side;
// the agent, seeing that, ends the member connection and then the stream.
func (c *memberConn) Close() error {
	c.closeOnce.Do(func() {
		if c.tunnel.forgotten.Load() {
			// Its series went with the tunnel; a new Cluster of the same
			// name, or the same one reached directly now, starts afresh.
			return
		}
		record(c.cluster, func() { streamsOpen.WithLabelValues(c.cluster).Dec() })
	})
	return c.Conn.Close()
}

func (c *memberConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.read = true
	}
	if !errors.Is(err, io.EOF) {
		return n, err
	}
	if c.tunnel.session.IsClosed() {
		// yamux ends the streams of a dead tunnel as if they were done.
		return n, fmt.Errorf("the tunnel of cluster %q ended: %w", c.cluster, io.ErrUnexpectedEOF)
	}
	if !c.read {
		return n, fmt.Errorf("the switchboard-agent of cluster %q closed the stream before the member answered: "+
			"the agent could not connect to the member's API server (see the agent's log): %w", c.cluster, io.ErrUnexpectedEOF)
	}
	return n, err
}

// bufferedConn reads first what a bufio.Reader already holds.
type bufferedConn struct {
	net.Conn
	reader *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.reader.Read(p) }

// IsAttach says whether a request is an agent's for clusters/<name>/attach.
// It is long-running: it lasts as long as the tunnel.
func IsAttach(info *request.RequestInfo) bool {
	return info != nil && info.IsResourceRequest && info.APIGroup == v1alpha1.GroupName &&
		info.Resource == "clusters" && info.Subresource == Subresource
}
