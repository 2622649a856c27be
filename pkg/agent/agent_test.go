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

package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/goleak"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/reach"
	"github.com/switchboard-io/switchboard/pkg/tunnel"
)

// fastKeepAlive finds a dead tunnel in well under a second; only the test
// of keepalives uses it, since a loaded machine can miss so short a
// deadline on a live tunnel.
var fastKeepAlive = tunnel.KeepAlive{Interval: 100 * time.Millisecond, Timeout: 300 * time.Millisecond}

// fastBackoff reconnects at once, for tests.
var fastBackoff = wait.Backoff{Duration: 20 * time.Millisecond, Factor: 1.5, Jitter: 0.5, Steps: 1 << 30, Cap: 200 * time.Millisecond}

// hub stands for the hub's aggregator in front of a tunnel.Server: an
// HTTP/1.1 TLS server whose every request is an agent's for cluster.
type hub struct {
	// tunnels is the first of replicas, to which most tests talk.
	tunnels *tunnel.Server
	// replicas take the tunnel requests in turn, as the replicas behind
	// the hub's Service of switchboard would.
	replicas []*tunnel.Server
	next     atomic.Int32
	server   *httptest.Server
	// requests counts the tunnel requests the hub got.
	requests atomic.Int32
	// refuse, when set, answers requests with this Status instead.
	refuse atomic.Pointer[apierrors.StatusError]
}

func newHub(t *testing.T, cluster string) *hub {
	t.Helper()
	return newHubWith(t, cluster, tunnel.DefaultKeepAlive, "replica-a")
}

func newHubWith(t *testing.T, cluster string, keepAlive tunnel.KeepAlive, ids ...string) *hub {
	t.Helper()
	h := &hub{}
	for _, id := range ids {
		h.replicas = append(h.replicas, tunnel.NewServer(tunnel.Config{ID: id, KeepAlive: keepAlive}))
	}
	h.tunnels = h.replicas[0]
	h.server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.requests.Add(1)
		want := "/apis/cluster.switchboard.io/v1alpha1/clusters/" + cluster + "/attach"
		if req.URL.Path != want || req.Method != http.MethodPost {
			http.Error(w, fmt.Sprintf("%s %s, want POST %s", req.Method, req.URL.Path, want), http.StatusNotFound)
			return
		}
		if refused := h.refuse.Load(); refused != nil {
			writeStatus(w, refused)
			return
		}
		replica := h.replicas[int(h.next.Add(1)-1)%len(h.replicas)]
		if err := replica.Serve(w, req, cluster, nil); err != nil {
			writeStatus(w, err)
		}
	}))
	h.server.StartTLS()
	t.Cleanup(func() {
		for _, r := range h.replicas {
			r.Close()
		}
		h.server.Close()
	})
	return h
}

func writeStatus(w http.ResponseWriter, err error) {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		status = apierrors.NewInternalError(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(status.Status().Code))
	_, _ = fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":%q,"code":%d}`,
		status.Status().Message, status.Status().Code)
}

// config is the agent's hub configuration for this hub.
func (h *hub) config() *rest.Config {
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.server.Certificate().Raw})
	return &rest.Config{Host: h.server.URL, BearerToken: "agent-token", TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}}
}

// startAgent runs an agent for cluster until the test ends.
func startAgent(t *testing.T, h *hub, cluster, member string) *Agent {
	t.Helper()
	a, err := New(Config{Hub: h.config(), Cluster: cluster, MemberAddress: member, Backoff: fastBackoff, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return a
}

func waitConnected(t *testing.T, h *hub, cluster string, want bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		connected, _, _ := h.tunnels.Connected(cluster)
		return connected == want, nil
	})
	if err != nil {
		t.Fatalf("cluster %s: connected never became %v", cluster, want)
	}
}

// echoMember reads a connection to its end, then writes back "<n>:" and
// what it read, then closes: a reply only a half-close lets through.
func echoMember(t *testing.T) (addr string, accepted *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int32{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer func() { _ = c.Close() }()
				data, err := io.ReadAll(c)
				if err != nil {
					return
				}
				_, _ = fmt.Fprintf(c, "%d:", len(data))
				_, _ = c.Write(data)
			}()
		}
	}()
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().String(), accepted
}

// roundTrip sends payload on a stream, ends its writing side, and returns
// what came back.
func roundTrip(conn net.Conn, payload []byte) ([]byte, error) {
	defer func() { _ = conn.Close() }()
	writeErr := make(chan error, 1)
	go func() {
		_, err := conn.Write(payload)
		if err == nil {
			err = halfClose(conn)
		}
		writeErr <- err
	}()
	got, err := io.ReadAll(conn)
	if werr := <-writeErr; werr != nil {
		return got, werr
	}
	return got, err
}

// halfClose ends the writing side of a stream from the tunnel server,
// which is a yamux stream whose Close ends only that side.
func halfClose(conn net.Conn) error {
	return conn.(interface{ CloseWrite() error }).CloseWrite()
}

func TestStreamsCarryBytesBothWaysWithHalfClose(t *testing.T) {
	h := newHub(t, "edge1")
	member, _ := echoMember(t)
	startAgent(t, h, "edge1", member)
	waitConnected(t, h, "edge1", true)

	for _, size := range []int{0, 1, 64 << 10, 1 << 20} {
		payload := make([]byte, size)
		_, _ = rand.Read(payload)
		conn, err := h.tunnels.Dial(context.Background(), "edge1")
		if err != nil {
			t.Fatal(err)
		}
		got, err := roundTrip(conn, payload)
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		want := append([]byte(fmt.Sprintf("%d:", size)), payload...)
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: got %d bytes back, want %d", size, len(got), len(want))
		}
	}
	if got := h.requests.Load(); got != 1 {
		t.Errorf("the agent made %d tunnel requests, want 1: every stream goes over one tunnel", got)
	}
}

func TestManyConcurrentStreams(t *testing.T) {
	h := newHub(t, "edge1")
	member, accepted := echoMember(t)
	startAgent(t, h, "edge1", member)
	waitConnected(t, h, "edge1", true)

	const streams = 200
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := []byte(strings.Repeat(fmt.Sprintf("stream %d;", i), 100+i))
			conn, err := h.tunnels.Dial(context.Background(), "edge1")
			if err != nil {
				errs <- err
				return
			}
			got, err := roundTrip(conn, payload)
			if err != nil {
				errs <- err
				return
			}
			if want := fmt.Sprintf("%d:%s", len(payload), payload); string(got) != want {
				errs <- fmt.Errorf("stream %d got another stream's bytes or lost some (%d bytes, want %d)", i, len(got), len(want))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := accepted.Load(); got != streams {
		t.Errorf("the member accepted %d connections, want one per stream: %d", got, streams)
	}
}

// TestTheAgentDialsOnlyItsMember: whatever address switchboard's
// transport asks for, the stream reaches the agent's one member address.
func TestTheAgentDialsOnlyItsMember(t *testing.T) {
	h := newHub(t, "edge1")
	member, accepted := echoMember(t)
	elsewhere, elsewhereAccepted := echoMember(t)
	startAgent(t, h, "edge1", member)
	waitConnected(t, h, "edge1", true)

	cl := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "edge1"},
		Spec: v1alpha1.ClusterSpec{Connection: v1alpha1.ConnectionTunnel, Endpoint: "https://" + elsewhere}}
	dialer, err := tunnel.Dialers{Tunnels: h.tunnels, Network: reach.Network{Timeout: time.Second}}.DialerFor(cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{elsewhere, "169.254.169.254:80", "kubernetes.default.svc:443"} {
		conn, err := dialer.DialContext(context.Background(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := roundTrip(conn, []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	if got := accepted.Load(); got != 3 {
		t.Errorf("the member accepted %d connections, want 3", got)
	}
	if got := elsewhereAccepted.Load(); got != 0 {
		t.Errorf("the agent dialed another address %d times", got)
	}
}

func TestDirectClustersDialTheNetwork(t *testing.T) {
	member, accepted := echoMember(t)
	cl := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "member1"},
		Spec: v1alpha1.ClusterSpec{Connection: v1alpha1.ConnectionDirect, Endpoint: "https://" + member}}
	dialer, err := tunnel.Dialers{Tunnels: tunnel.NewServer(tunnel.Config{}), Network: reach.Network{Timeout: time.Second}}.DialerFor(cl)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dialer.DialContext(context.Background(), "tcp", member)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(conn, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if accepted.Load() != 1 {
		t.Error("a direct Cluster's dial did not reach its endpoint")
	}
}

func TestNoAgent(t *testing.T) {
	h := newHub(t, "edge1")
	_, err := h.tunnels.Dial(context.Background(), "edge1")
	var noAgent *reach.NoAgentError
	if !errors.As(err, &noAgent) || !noAgent.Never || noAgent.Cluster != "edge1" {
		t.Fatalf("dial with no agent ever: %v, want a NoAgentError that says none ever came", err)
	}
	if !strings.Contains(err.Error(), "clusters/attach") {
		t.Errorf("the error does not say what to check: %v", err)
	}

	member, _ := echoMember(t)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(Config{Hub: h.config(), Cluster: "edge1", MemberAddress: member, Backoff: fastBackoff})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	waitConnected(t, h, "edge1", true)
	cancel()
	<-done
	waitConnected(t, h, "edge1", false)

	_, err = h.tunnels.Dial(context.Background(), "edge1")
	if !errors.As(err, &noAgent) || noAgent.Never {
		t.Fatalf("dial after the agent left: %v, want a NoAgentError with the time it left", err)
	}
	if !strings.Contains(err.Error(), "disconnected at") {
		t.Errorf("the error does not say since when: %v", err)
	}
	if reach.Classify(err) != reach.NoAgent {
		t.Errorf("Classify = %s, want %s", reach.Classify(err), reach.NoAgent)
	}
}

func TestReconnectsAfterADrop(t *testing.T) {
	h := newHub(t, "edge1")
	member, _ := echoMember(t)
	a := startAgent(t, h, "edge1", member)
	waitConnected(t, h, "edge1", true)

	// Switchboard drops the tunnel, as when the Cluster is recreated.
	h.tunnels.Forget("edge1")
	waitConnected(t, h, "edge1", false)
	waitConnected(t, h, "edge1", true)
	if got := h.requests.Load(); got < 2 {
		t.Fatalf("the agent made %d tunnel requests, want a reconnect", got)
	}
	if !a.Connected() {
		t.Error("the agent does not report itself connected")
	}
	conn, err := h.tunnels.Dial(context.Background(), "edge1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(conn, []byte("again")); err != nil || string(got) != "5:again" {
		t.Fatalf("after the reconnect: %q, %v", got, err)
	}
}

// TestKeepAliveFindsADeadConnection: a connection that stops carrying
// bytes without closing (a dead NAT entry, a cut cable) ends the tunnel on
// both sides, and the agent reconnects.
func TestKeepAliveFindsADeadConnection(t *testing.T) {
	h := newHubWith(t, "edge1", fastKeepAlive, "replica-a")
	member, _ := echoMember(t)
	// The agent reaches the hub through a relay that can freeze.
	relay := newFreezingRelay(t, h.server.Listener.Addr().String())
	cfg := h.config()
	cfg.Host = "https://" + relay.addr()
	cfg.ServerName = "example.com"
	a, err := New(Config{Hub: cfg, Cluster: "edge1", MemberAddress: member, KeepAlive: fastKeepAlive, Backoff: fastBackoff})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitConnected(t, h, "edge1", true)

	conn, err := h.tunnels.Dial(context.Background(), "edge1")
	if err != nil {
		t.Fatal(err)
	}
	relay.freeze()
	waitConnected(t, h, "edge1", false)
	// A stream in the dead tunnel ends; its reader does not hang.
	if _, err := io.ReadAll(conn); err == nil {
		t.Error("a stream of the dead tunnel read to a clean end")
	}
	relay.thaw()
	waitConnected(t, h, "edge1", true)
}

// freezingRelay forwards TCP to a target until frozen; frozen, it keeps
// the connections open but carries nothing. New connections after a thaw
// carry bytes again.
type freezingRelay struct {
	listener net.Listener
	target   string
	mu       sync.Mutex
	frozen   bool
	conns    []net.Conn
}

func newFreezingRelay(t *testing.T, target string) *freezingRelay {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &freezingRelay{listener: l, target: target}
	go r.serve()
	t.Cleanup(func() {
		_ = l.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range r.conns {
			_ = c.Close()
		}
	})
	return r
}

func (r *freezingRelay) addr() string { return r.listener.Addr().String() }

func (r *freezingRelay) freeze() { r.mu.Lock(); r.frozen = true; r.mu.Unlock() }
func (r *freezingRelay) thaw()   { r.mu.Lock(); r.frozen = false; r.mu.Unlock() }

func (r *freezingRelay) isFrozen() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.frozen }

func (r *freezingRelay) serve() {
	for {
		c, err := r.listener.Accept()
		if err != nil {
			return
		}
		if r.isFrozen() {
			// Swallowed: held open, never answered.
			r.mu.Lock()
			r.conns = append(r.conns, c)
			r.mu.Unlock()
			continue
		}
		target, err := net.Dial("tcp", r.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, c, target)
		r.mu.Unlock()
		go r.pipe(c, target)
		go r.pipe(target, c)
	}
}

// pipe copies until frozen; then it stops reading, and the bytes stay in
// the kernel's buffers as on a dead path.
func (r *freezingRelay) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !r.isFrozen() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
		for r.isFrozen() {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestServerCloseEndsStreamsAndRefusesTunnels(t *testing.T) {
	h := newHub(t, "edge1")
	member := silentMember(t)
	startAgent(t, h, "edge1", member)
	waitConnected(t, h, "edge1", true)
	conn, err := h.tunnels.Dial(context.Background(), "edge1")
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() { _, err := io.ReadAll(conn); read <- err }()

	h.tunnels.Close()
	// The read ends, cleanly or not; it does not hang on a member that
	// never answers.
	if err := <-read; err != nil {
		t.Logf("the stream ended with %v", err)
	}
	waitConnected(t, h, "edge1", false)
	// The agent tries again and is told the replica is going away.
	before := h.requests.Load()
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return h.requests.Load() > before, nil
	}); err != nil {
		t.Fatal("the agent did not try to reconnect")
	}
	if connected, _, _ := h.tunnels.Connected("edge1"); connected {
		t.Error("a closed server took a tunnel")
	}
	a, err := New(Config{Hub: h.config(), Cluster: "edge1", MemberAddress: member})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.dial(context.Background()); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("a tunnel request to a closed server: %v, want a 503 that says it is shutting down", err)
	}
}

// silentMember accepts connections and never writes.
func silentMember(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

func TestAnUnreachableMemberEndsTheStreamAtOnce(t *testing.T) {
	h := newHub(t, "edge1")
	// Nothing listens here.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := l.Addr().String()
	_ = l.Close()
	startAgent(t, h, "edge1", gone)
	waitConnected(t, h, "edge1", true)

	conn, err := h.tunnels.Dial(context.Background(), "edge1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_, err = conn.Read(make([]byte, 1))
	if err == nil || !strings.Contains(err.Error(), "could not connect to the member's API server") {
		t.Fatalf("read = %v, want an error that says the agent could not reach the member", err)
	}
	if reach.Classify(err) != reach.Reset {
		t.Errorf("Classify = %s, want %s", reach.Classify(err), reach.Reset)
	}
}

func TestRefusalsSayWhy(t *testing.T) {
	h := newHub(t, "edge1")
	h.refuse.Store(apierrors.NewForbidden(v1alpha1.Resource("clusters/attach"), "edge1", errors.New("RBAC: no")))
	a, err := New(Config{Hub: h.config(), Cluster: "edge1", MemberAddress: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = a.dial(context.Background())
	if err == nil {
		t.Fatal("a refused tunnel request did not fail")
	}
	for _, want := range []string{"403", "may not create clusters/attach", `"edge1"`, "RBAC: no"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestTheServerRefusesWhatIsNotATunnel(t *testing.T) {
	h := newHub(t, "edge1")
	client := h.server.Client()
	resp, err := client.Post(h.server.URL+"/apis/cluster.switchboard.io/v1alpha1/clusters/edge1/attach", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tunnel.Protocol) {
		t.Errorf("a plain POST: %d %s, want 400 naming the upgrade it takes", resp.StatusCode, body)
	}
}

// TestTheServerRefusesStreamsFromTheAgent: only switchboard opens
// streams; an agent that opens one loses its tunnel at once, so it cannot
// make switchboard hold what it writes.
func TestTheServerRefusesStreamsFromTheAgent(t *testing.T) {
	h := newHub(t, "edge1")
	a, err := New(Config{Hub: h.config(), Cluster: "edge1", MemberAddress: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := a.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	session, err := newAgentSession(conn, a)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = session.Close() }()
	// The server may end the tunnel before yamux here hears that its
	// request to open went out: then OpenStream fails, as it should.
	if stream, err := session.OpenStream(); err == nil {
		_, _ = stream.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		if n, err := stream.Read(make([]byte, 16)); err == nil || n > 0 {
			t.Errorf("a stream the agent opened was answered: %d bytes, %v", n, err)
		}
	} else if !errors.Is(err, yamux.ErrSessionShutdown) {
		t.Fatal(err)
	}
	// Well before yamux's own 75s open timeout would end it.
	select {
	case <-session.CloseChan():
	case <-time.After(30 * time.Second):
		t.Fatal("the tunnel of an agent that opened a stream is still up")
	}
	waitConnected(t, h, "edge1", false)
}

// TestTheServerReadsBytesSentWithTheRequest: yamux frames that arrive in
// the same packet as the upgrade request are not lost.
func TestTheServerReadsBytesSentWithTheRequest(t *testing.T) {
	h := newHub(t, "edge1")
	pool := x509.NewCertPool()
	pool.AddCert(h.server.Certificate())
	conn, err := tls.Dial("tcp", h.server.Listener.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "example.com", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	request := "POST /apis/cluster.switchboard.io/v1alpha1/clusters/edge1/attach HTTP/1.1\r\nHost: hub\r\n" +
		"Connection: Upgrade\r\nUpgrade: " + tunnel.Protocol + "\r\nContent-Length: 0\r\n\r\n"
	// A yamux ping (version 0, type 2, flag SYN, stream 0, opaque 42),
	// written with the request.
	ping := []byte{0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 42}
	if _, err := conn.Write(append([]byte(request), ping...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	reader := bufio.NewReader(conn)
	resp, err := http.ReadResponse(reader, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	// The server pings too, before it takes the tunnel: answer it, and
	// find the answer to ours.
	// The two come in either order.
	ack := []byte{0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 42}
	acked, answered := false, false
	for frames := 0; !acked || !answered; frames++ {
		frame := make([]byte, 12)
		if _, err := io.ReadFull(reader, frame); err != nil {
			t.Fatalf("after %d frames (our ping acknowledged: %v, the server's answered: %v): %v", frames, acked, answered, err)
		}
		switch {
		case bytes.Equal(frame, ack):
			acked = true
		case frame[1] == 2 && frame[3] == 1: // the server's ping
			frame[3] = 2
			if _, err := conn.Write(frame); err != nil {
				t.Fatal(err)
			}
			answered = true
		}
		if frames > 4 {
			t.Fatalf("no ACK of the ping sent with the request among %d frames; last %v", frames, frame)
		}
	}
	waitConnected(t, h, "edge1", true)
}

// TestTheAgentHoldsATunnelToEveryReplica: with two replicas behind the
// hub's Service, an agent with ServerCount 2 holds a tunnel to each, so a
// request that lands on either reaches the member.
func TestTheAgentHoldsATunnelToEveryReplica(t *testing.T) {
	h := newHubWith(t, "edge1", tunnel.DefaultKeepAlive, "replica-a", "replica-b")
	member, _ := echoMember(t)
	a, err := New(Config{Hub: h.config(), Cluster: "edge1", MemberAddress: member, Backoff: fastBackoff, ServerCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	for _, r := range h.replicas {
		err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			connected, _, _ := r.Connected("edge1")
			return connected, nil
		})
		if err != nil {
			t.Fatal("a replica has no tunnel")
		}
		conn, err := r.Dial(context.Background(), "edge1")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := roundTrip(conn, []byte("hi")); err != nil || string(got) != "2:hi" {
			t.Fatalf("through a replica: %q, %v", got, err)
		}
	}
	waitTunnels(t, a, 2)

	// One replica drops its tunnel, and the agent's next request lands on
	// the other: the agent holds no second tunnel there, and tries again
	// until it is back on the first.
	h.next.Store(1)
	h.replicas[0].Forget("edge1")
	err = wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		connected, _, _ := h.replicas[0].Connected("edge1")
		return connected, nil
	})
	if err != nil {
		t.Fatal("the agent did not come back to the replica that dropped it")
	}
	waitTunnels(t, a, 2)
}

func TestOneTunnelByDefault(t *testing.T) {
	h := newHubWith(t, "edge1", tunnel.DefaultKeepAlive, "replica-a", "replica-b")
	member, _ := echoMember(t)
	a := startAgent(t, h, "edge1", member)
	waitConnected(t, h, "edge1", true)
	waitTunnels(t, a, 1)
	if connected, _, _ := h.replicas[1].Connected("edge1"); connected {
		t.Error("the second replica has a tunnel too")
	}
}

// TestPooledTLSThroughTheTunnel: an HTTP/2 transport dialing through the
// tunnel reuses one TLS connection for many requests, end to end with the
// member, whose certificate it verifies.
func TestPooledTLSThroughTheTunnel(t *testing.T) {
	h := newHub(t, "edge1")
	var conns atomic.Int32
	member := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path)
	}))
	member.EnableHTTP2 = true
	member.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			conns.Add(1)
		}
	}
	member.StartTLS()
	t.Cleanup(member.Close)
	startAgent(t, h, "edge1", member.Listener.Addr().String())
	waitConnected(t, h, "edge1", true)

	pool := x509.NewCertPool()
	pool.AddCert(member.Certificate())
	transport := &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return h.tunnels.Dial(ctx, "edge1") },
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "example.com", MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	for i := 0; i < 50; i++ {
		resp, err := client.Get("https://member.invalid/version")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if string(body) != "HTTP/2.0 /version" {
			t.Fatalf("request %d: %q", i, body)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("the member saw %d connections for 50 requests, want 1 pooled connection", got)
	}

	// A certificate for another name is refused through the tunnel too.
	transport.TLSClientConfig.ServerName = "other.example"
	transport.CloseIdleConnections()
	if _, err := client.Get("https://member.invalid/version"); reach.Classify(err) != reach.TLS {
		t.Errorf("a member certificate for another name: %v, want a TLS failure", err)
	}
}

// TestNoGoroutineLeftAfterAThousandStreams: streams, relays and member
// connections all end with their streams.
func TestNoGoroutineLeftAfterAThousandStreams(t *testing.T) {
	h := newHub(t, "edge1")
	member, _ := echoMember(t)
	startAgent(t, h, "edge1", member)
	waitConnected(t, h, "edge1", true)
	// Warm up, so the pools and timers the first stream starts are there.
	conn, err := h.tunnels.Dial(context.Background(), "edge1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(conn, []byte("warm")); err != nil {
		t.Fatal(err)
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	var failed atomic.Int32
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			conn, err := h.tunnels.Dial(context.Background(), "edge1")
			if err != nil {
				failed.Add(1)
				return
			}
			if got, err := roundTrip(conn, []byte("ping")); err != nil || string(got) != "4:ping" {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of 1000 streams failed", n)
	}
}

// newAgentSession is the agent's end of a tunnel, for a test that plays
// the agent itself.
func newAgentSession(conn io.ReadWriteCloser, a *Agent) (*yamux.Session, error) {
	return yamux.Server(conn, a.mux)
}

// waitTunnels waits until the agent holds want tunnels. A replica counts a
// tunnel once it sent its 101, the agent once it read it.
func waitTunnels(t *testing.T, a *Agent, want int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return a.Tunnels() == want, nil
	})
	if err != nil {
		t.Fatalf("the agent holds %d tunnels, want %d", a.Tunnels(), want)
	}
}

// TestANewTunnelCarriesNothingUntilTheAgentAnswers: a tunnel whose agent
// has not started its end (it may be about to close it, holding one to
// this replica already) is not where streams go.
func TestANewTunnelCarriesNothingUntilTheAgentAnswers(t *testing.T) {
	h := newHub(t, "edge1")
	member, _ := echoMember(t)
	a := startAgent(t, h, "edge1", member)
	waitConnected(t, h, "edge1", true)
	waitTunnels(t, a, 1)

	// A second upgrade that never runs yamux on its end.
	stuck, err := New(Config{Hub: h.config(), Cluster: "edge1", MemberAddress: member})
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := stuck.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()

	for i := 0; i < 5; i++ {
		stream, err := h.tunnels.Dial(context.Background(), "edge1")
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.SetDeadline(time.Now().Add(10 * time.Second))
		if got, err := roundTrip(stream, []byte("hi")); err != nil || string(got) != "2:hi" {
			t.Fatalf("stream %d went into the tunnel nobody answers: %q, %v", i, got, err)
		}
	}
}

// TestStreamGaugeAfterForget: a stream that outlives its tunnel's Forget
// (its Cluster deleted, or switched to Direct) leaves the gauge of open
// streams alone.
func TestStreamGaugeAfterForget(t *testing.T) {
	h := newHub(t, "gauge1")
	member, _ := echoMember(t)
	startAgent(t, h, "gauge1", member)
	waitConnected(t, h, "gauge1", true)
	conn, err := h.tunnels.Dial(context.Background(), "gauge1")
	if err != nil {
		t.Fatal(err)
	}
	if got := streamsOpen(t, "gauge1"); got != 1 {
		t.Fatalf("streams open = %v, want 1", got)
	}
	h.tunnels.Forget("gauge1")
	_ = conn.Close()
	if got := streamsOpen(t, "gauge1"); got != 0 {
		t.Errorf("streams open after the tunnel was forgotten and its stream closed = %v, want no series (0)", got)
	}
}

// streamsOpen reads switchboard_tunnel_streams_open for cluster; 0 when
// there is no series.
func streamsOpen(t *testing.T, cluster string) float64 {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "switchboard_tunnel_streams_open" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cluster" && l.GetValue() == cluster {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

// TestTheAgentGoesThroughAProxy: a site that allows only outbound traffic
// through a proxy: the kubeconfig's proxy-url (or HTTPS_PROXY) carries the
// tunnel, with a CONNECT.
func TestTheAgentGoesThroughAProxy(t *testing.T) {
	h := newHub(t, "edge1")
	member, _ := echoMember(t)
	var connects atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		connects.Add(1)
		target, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		client, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			_ = target.Close()
			return
		}
		_, _ = client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		Splice(client, target)
	}))
	t.Cleanup(proxy.Close)
	cfg := h.config()
	proxyURL, err := url.Parse(proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Proxy = http.ProxyURL(proxyURL)
	a, err := New(Config{Hub: cfg, Cluster: "edge1", MemberAddress: member, Backoff: fastBackoff})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitConnected(t, h, "edge1", true)
	conn, err := h.tunnels.Dial(context.Background(), "edge1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(conn, []byte("hi")); err != nil || string(got) != "2:hi" {
		t.Fatalf("through the proxied tunnel: %q, %v", got, err)
	}
	if got := connects.Load(); got != 1 {
		t.Errorf("the proxy saw %d CONNECTs, want 1", got)
	}
}
