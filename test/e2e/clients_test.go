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

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/switchboard-io/switchboard/test/e2e/framework"
	"github.com/switchboard-io/switchboard/test/topology"
)

// What misbehaving clients may hold of switchboard, straight at its port.
const (
	// slowlorisConns send a request's headers a byte a second.
	slowlorisConns = 500
	// idleConns finish the TLS handshake and send nothing more; half of
	// them negotiate HTTP/2 and send its preface and SETTINGS first.
	idleConns = 5000
	// streamSessions are exec and port-forward sessions, over SPDY and
	// over WebSocket, each dropped while its command runs.
	streamSessions = 1000
	// unreadObjects of unreadObjectBytes each are written to a member
	// while a watch of them is never read.
	unreadObjects     = 200
	unreadObjectBytes = 256 << 10
	// Afterwards switchboard's goroutines, descriptors and RSS are back
	// within clientsSlack of where they were before.
	clientsSlack = 0.05
)

// TestMisbehavingClients points clients that misbehave straight at
// switchboard's port, as the hub's aggregator would reach it, and checks
// that switchboard bounds what each holds, goes on serving others
// meanwhile, and gives everything back: its goroutines, open descriptors
// and RSS end within 5% of where they began.
func TestMisbehavingClients(t *testing.T) {
	s := f.State
	proc := switchboardProcess(t)
	m, err := s.Member("member1")
	if err != nil {
		t.Fatal(err)
	}
	c := newClientsRun(t, s, proc.PID, m)

	// A first round makes what switchboard keeps once it has served such
	// clients: the runtime's heap grown to its peak and given back down
	// to what the collector's goal keeps, member connections, pools. Its
	// idle connections are closed by the client, not waited for. The
	// baseline is taken once that has settled; a second round, in which
	// switchboard closes them itself, must then give everything back.
	for round, serverCloses := range []bool{false, true} {
		c.serverCloses = serverCloses
		name := fmt.Sprintf("round %d", round+1)
		if round == 0 {
			t.Logf("%s, before any client: %s", name, c.usage())
		} else {
			c.base = c.settled("after round 1")
			t.Logf("baseline: %s", c.base)
		}
		t.Run(name+": slowloris and idle connections", c.idleAndSlowloris)
		t.Run(name+": a watch that is never read", c.unreadWatch)
		t.Run(name+": exec and port-forward dropped mid-stream", c.droppedStreams)
	}

	// Everything given back: poll until all three are within the slack
	// (the runtime gives memory back to the kernel gradually).
	start := time.Now()
	var last usage
	for {
		last = c.usage()
		if last.within(c.base, clientsSlack) {
			break
		}
		if time.Since(start) > 5*time.Minute {
			t.Errorf("5 min after the last client left, switchboard holds %s; before the second round it held %s (allowed: %.0f%% more)", last, c.base, clientsSlack*100)
			break
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("after round 2: %s, %.1f s after the last client left (baseline %s)", last, time.Since(start).Seconds(), c.base)
	if after := switchboardProcess(t); after.PID != proc.PID {
		t.Errorf("switchboard restarted: pid %d, then %d", proc.PID, after.PID)
	}
}

// clientsRun is what the phases of TestMisbehavingClients share.
type clientsRun struct {
	t       *testing.T
	s       *topology.State
	pid     int
	member  *topology.Cluster
	addr    string // switchboard's host:port
	roots   *x509.CertPool
	metrics *http.Client // one kept connection: scraping opens none
	config  *rest.Config // straight at switchboard, as the aggregator, for admin

	// serverCloses: the idle and slow connections are left for switchboard
	// to close (else the client closes them once it has checked them).
	serverCloses bool
	base         usage
}

func newClientsRun(t *testing.T, s *topology.State, pid int, m *topology.Cluster) *clientsRun {
	t.Helper()
	u, err := url.Parse(s.Switchboard.URL)
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := s.FrontProxyClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(metrics.CloseIdleConnections)
	return &clientsRun{
		t:       t,
		s:       s,
		pid:     pid,
		member:  m,
		addr:    u.Host,
		roots:   rootsOf(mustRead(t, s.Switchboard.CACert)),
		metrics: metrics,
		config:  straightAsHubAdmin(s, s.Switchboard.URL),
	}
}

// asHubAdmin sends what the hub's aggregator sends for its administrator.
type asHubAdmin struct{ next http.RoundTripper }

func (a asHubAdmin) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("X-Remote-User", "admin")
	req.Header.Set("X-Remote-Group", "system:masters")
	return a.next.RoundTrip(req)
}

// usage is what switchboard's process holds.
type usage struct {
	goroutines int
	fds        int
	rss        int64 // bytes
	heap       int64 // bytes of heap in use
}

func (u usage) String() string {
	return fmt.Sprintf("%d goroutines, %d descriptors, RSS %.1f MiB (heap in use %.1f MiB)",
		u.goroutines, u.fds, float64(u.rss)/(1<<20), float64(u.heap)/(1<<20))
}

// within says whether u is no more than slack above base in goroutines,
// descriptors and RSS. Less is fine: connections of earlier tests expire.
func (u usage) within(base usage, slack float64) bool {
	return float64(u.goroutines) <= float64(base.goroutines)*(1+slack) &&
		float64(u.fds) <= float64(base.fds)*(1+slack) &&
		float64(u.rss) <= float64(base.rss)*(1+slack)
}

func (u usage) max(o usage) usage {
	return usage{
		goroutines: max(u.goroutines, o.goroutines),
		fds:        max(u.fds, o.fds),
		rss:        max(u.rss, o.rss),
		heap:       max(u.heap, o.heap),
	}
}

var (
	metricSample = regexp.MustCompile(`(?m)^(go_goroutines|go_memstats_heap_inuse_bytes) (\S+)$`)
	vmRSS        = regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB$`)
)

// usage reads what switchboard holds, or fails the test.
func (c *clientsRun) usage() usage {
	c.t.Helper()
	u, err := c.readUsage()
	if err != nil {
		c.t.Fatal(err)
	}
	return u
}

// readUsage reads the goroutines and heap from switchboard's /metrics and
// the descriptors and RSS from /proc.
func (c *clientsRun) readUsage() (usage, error) {
	var u usage
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, body, err := topology.FrontProxyGet(ctx, c.metrics, c.s.Switchboard.URL+"/metrics")
	if err != nil {
		return u, fmt.Errorf("switchboard's /metrics: %w", err)
	}
	if code != http.StatusOK {
		return u, fmt.Errorf("switchboard's /metrics: %d %.300s", code, body)
	}
	for _, m := range metricSample.FindAllStringSubmatch(body, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return u, fmt.Errorf("%s: %w", m[0], err)
		}
		switch m[1] {
		case "go_goroutines":
			u.goroutines = int(v)
		case "go_memstats_heap_inuse_bytes":
			u.heap = int64(v)
		}
	}
	if u.goroutines == 0 || u.heap == 0 {
		return u, errors.New("no go_goroutines or go_memstats_heap_inuse_bytes in switchboard's /metrics")
	}
	proc := filepath.Join("/proc", strconv.Itoa(c.pid))
	fds, err := os.ReadDir(filepath.Join(proc, "fd"))
	if err != nil {
		return u, err
	}
	u.fds = len(fds)
	status, err := os.ReadFile(filepath.Join(proc, "status"))
	if err != nil {
		return u, err
	}
	rss := vmRSS.FindSubmatch(status)
	if rss == nil {
		return u, fmt.Errorf("no VmRSS in %s/status", proc)
	}
	kb, err := strconv.ParseInt(string(rss[1]), 10, 64)
	if err != nil {
		return u, err
	}
	u.rss = kb << 10
	return u, nil
}

// settled reads usage every 5 s until RSS, goroutines and descriptors
// have stayed within 2% for 30 s (at most 5 min), and returns the median
// of those last readings.
func (c *clientsRun) settled(what string) usage {
	c.t.Helper()
	const window = 7 // readings, 5 s apart
	var us []usage
	start := time.Now()
	for {
		us = append(us, c.usage())
		if len(us) > window {
			us = us[1:]
		}
		if len(us) == window && (flat(us, func(u usage) int64 { return u.rss }) &&
			flat(us, func(u usage) int64 { return int64(u.goroutines) }) &&
			flat(us, func(u usage) int64 { return int64(u.fds) })) || time.Since(start) > 5*time.Minute {
			break
		}
		time.Sleep(5 * time.Second)
	}
	median := func(field func(usage) int64) int64 {
		vs := make([]int64, 0, len(us))
		for _, u := range us {
			vs = append(vs, field(u))
		}
		sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
		return vs[len(vs)/2]
	}
	m := usage{
		goroutines: int(median(func(u usage) int64 { return int64(u.goroutines) })),
		fds:        int(median(func(u usage) int64 { return int64(u.fds) })),
		rss:        median(func(u usage) int64 { return u.rss }),
		heap:       median(func(u usage) int64 { return u.heap }),
	}
	c.t.Logf("%s: settled after %.0f s at %s", what, time.Since(start).Seconds(), m)
	return m
}

// flat says whether field varies by at most 2% (or 2) across us.
func flat(us []usage, field func(usage) int64) bool {
	lo, hi := field(us[0]), field(us[0])
	for _, u := range us[1:] {
		lo, hi = min(lo, field(u)), max(hi, field(u))
	}
	return hi-lo <= max(2, lo/50)
}

// sampler reads usage every second until stopped and keeps the peak.
type sampler struct {
	stop chan struct{}
	done chan usage
}

func (c *clientsRun) sample() *sampler {
	sm := &sampler{stop: make(chan struct{}), done: make(chan usage, 1)}
	go func() {
		var peak usage
		for {
			// A reading that fails is no peak; the phases check that
			// switchboard answers.
			if u, err := c.readUsage(); err == nil {
				peak = peak.max(u)
			}
			select {
			case <-sm.stop:
				sm.done <- peak
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return sm
}

func (sm *sampler) peak() usage {
	close(sm.stop)
	return <-sm.done
}

// checkServes asks switchboard for a member's /version and the Cluster
// list, as the hub's administrator, and fails unless both answer 200.
func (c *clientsRun) checkServes(while string) {
	c.t.Helper()
	for _, path := range []string{proxyPrefix + c.member.Name + "/proxy/version", "/apis/cluster.switchboard.io/v1alpha1/clusters"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		code, body, err := topology.FrontProxyGet(ctx, c.metrics, c.s.Switchboard.URL+path)
		cancel()
		if err != nil || code != http.StatusOK {
			c.t.Errorf("%s: GET %s: %d %v %.300s", while, path, code, err, body)
			continue
		}
		c.t.Logf("%s: GET %s: 200 in %.0f ms", while, path, time.Since(start).Seconds()*1000)
	}
}

// idleAndSlowloris opens slowlorisConns connections that send a request's
// headers a byte a second and idleConns that finish the TLS handshake and
// send nothing (HTTP/1.1) or only the HTTP/2 preface and SETTINGS, all at
// once. switchboard must serve others meanwhile and close every one of
// them itself: k8s.io/apiserver's ReadHeaderTimeout (32 s) ends the first
// two kinds, HTTP/2's IdleTimeout (90 s) the last.
func (c *clientsRun) idleAndSlowloris(t *testing.T) {
	before := c.usage()
	sm := c.sample()
	var (
		mu        sync.Mutex
		lifetimes = map[string][]time.Duration{}
		conns     []net.Conn
		readers   sync.WaitGroup
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range conns {
			_ = conn.Close()
		}
	})
	open := func(kind string) error {
		proto := "http/1.1"
		if kind == "idle HTTP/2" {
			proto = "h2"
		}
		dialer := &net.Dialer{Timeout: 30 * time.Second}
		conn, err := tls.DialWithDialer(dialer, "tcp", c.addr, &tls.Config{
			RootCAs: c.roots, ServerName: topology.SwitchboardServerName, NextProtos: []string{proto}, MinVersion: tls.VersionTLS12,
		})
		if err != nil {
			return err
		}
		opened := time.Now()
		mu.Lock()
		conns = append(conns, conn)
		mu.Unlock()
		gone := make(chan struct{})
		switch kind {
		case "idle HTTP/2":
			if got := conn.ConnectionState().NegotiatedProtocol; got != "h2" {
				return fmt.Errorf("switchboard negotiated %q, not h2", got)
			}
			// The client preface, an empty SETTINGS frame, and the ACK
			// of the server's SETTINGS: a well-formed, idle connection.
			preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00" + "\x00\x00\x00\x04\x01\x00\x00\x00\x00"
			if _, err := io.WriteString(conn, preface); err != nil {
				return err
			}
		case "slowloris":
			if _, err := io.WriteString(conn, "GET /version HTTP/1.1\r\nHost: "+topology.SwitchboardServerName+"\r\n"); err != nil {
				return err
			}
			go func() {
				header := []byte("X-Slow: " + strings.Repeat("a", 200) + "\r\n")
				for i := 0; ; i++ {
					select {
					case <-gone:
						return
					case <-time.After(time.Second):
					}
					if _, err := conn.Write(header[i%len(header) : i%len(header)+1]); err != nil {
						return
					}
				}
			}()
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer close(gone)
			_, _ = io.Copy(io.Discard, conn)
			mu.Lock()
			lifetimes[kind] = append(lifetimes[kind], time.Since(opened))
			mu.Unlock()
		}()
		return nil
	}

	kinds := make(chan string)
	go func() {
		defer close(kinds)
		for i := 0; i < slowlorisConns; i++ {
			kinds <- "slowloris"
		}
		for i := 0; i < idleConns; i++ {
			if i%2 == 0 {
				kinds <- "idle HTTP/1.1"
			} else {
				kinds <- "idle HTTP/2"
			}
		}
	}()
	start := time.Now()
	var openers sync.WaitGroup
	var openErrs atomic.Int64
	var firstErr atomic.Value
	for w := 0; w < 32; w++ {
		openers.Add(1)
		go func() {
			defer openers.Done()
			for kind := range kinds {
				if err := open(kind); err != nil {
					if openErrs.Add(1) == 1 {
						firstErr.Store(fmt.Sprintf("%s: %v", kind, err))
					}
				}
			}
		}()
	}
	openers.Wait()
	t.Logf("opened %d connections in %.1f s", slowlorisConns+idleConns, time.Since(start).Seconds())
	if n := openErrs.Load(); n > 0 {
		t.Errorf("%d connections could not be opened; the first: %s", n, firstErr.Load())
	}
	c.checkServes(fmt.Sprintf("with %d idle and slow connections open", slowlorisConns+idleConns))
	if !c.serverCloses {
		mu.Lock()
		for _, conn := range conns {
			_ = conn.Close()
		}
		mu.Unlock()
		readers.Wait()
		t.Logf("peak: %s; the client closed them", sm.peak())
		return
	}

	closed := make(chan struct{})
	go func() { readers.Wait(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Minute):
		mu.Lock()
		n := 0
		for _, l := range lifetimes {
			n += len(l)
		}
		mu.Unlock()
		t.Errorf("5 min after they were opened, switchboard had closed %d of the %d connections", n, slowlorisConns+idleConns)
	}
	peak := sm.peak()
	mu.Lock()
	defer mu.Unlock()
	for _, kind := range []string{"slowloris", "idle HTTP/1.1", "idle HTTP/2"} {
		l := lifetimes[kind]
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		if len(l) == 0 {
			t.Errorf("%s: switchboard closed none", kind)
			continue
		}
		t.Logf("%s: switchboard closed %d, after %.1f s to %.1f s (median %.1f s)", kind, len(l), l[0].Seconds(), l[len(l)-1].Seconds(), l[len(l)/2].Seconds())
	}
	t.Logf("before: %s; peak: %s", before, peak)
}

// unreadWatch holds a watch of a member's ConfigMaps open over a
// connection it never reads (a 4 KiB receive buffer), while a member
// writes unreadObjects objects of unreadObjectBytes each to it and a second
// watch reads them all. switchboard must not take up what the stalled
// caller does not read: its heap may not grow by half of it (buffering
// would hold all of it; what the heap grows by otherwise is garbage the
// collector has not yet taken).
func (c *clientsRun) unreadWatch(t *testing.T) {
	ctx := context.Background()
	admin, err := c.member.Client()
	if err != nil {
		t.Fatal(err)
	}
	ns := framework.CreateNamespace(t, admin, "unread-watch")
	watchPath := proxyPrefix + c.member.Name + "/proxy/api/v1/namespaces/" + ns + "/configmaps?watch=1"

	config := rest.CopyConfig(c.config)
	config.Host = c.s.Switchboard.URL + proxyPrefix + c.member.Name + "/proxy"
	reader, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	w, err := reader.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	pair, err := tls.LoadX509KeyPair(c.s.FrontProxy.ClientCert, c.s.FrontProxy.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.DialTimeout("tcp", c.addr, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	stalled := tls.Client(raw, &tls.Config{
		RootCAs: c.roots, ServerName: topology.SwitchboardServerName, Certificates: []tls.Certificate{pair},
		NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12,
	})
	defer func() { _ = stalled.Close() }()
	request := "GET " + watchPath + " HTTP/1.1\r\nHost: " + topology.SwitchboardServerName + "\r\nX-Remote-User: admin\r\nX-Remote-Group: system:masters\r\n\r\n"
	if _, err := io.WriteString(stalled, request); err != nil {
		t.Fatal(err)
	}
	// Its answer's first bytes say the watch began; nothing is read after.
	_ = stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
	first := make([]byte, len("HTTP/1.1 200"))
	if _, err := io.ReadFull(stalled, first); err != nil || string(first) != "HTTP/1.1 200" {
		t.Fatalf("the stalled watch: %q %v", first, err)
	}

	// The reading watch reads as the objects are written: a watch that
	// falls behind is closed by the member's kube-apiserver.
	seen := make(chan error, 1)
	go func() {
		n := 0
		timeout := time.After(3 * time.Minute)
		for n < unreadObjects {
			select {
			case ev, ok := <-w.ResultChan():
				switch {
				case !ok:
					seen <- fmt.Errorf("the reading watch ended after %d of %d objects", n, unreadObjects)
					return
				case ev.Type == watch.Added:
					n++
				default:
					seen <- fmt.Errorf("the reading watch got a %s event after %d of %d objects: %v", ev.Type, n, unreadObjects, ev.Object)
					return
				}
			case <-timeout:
				seen <- fmt.Errorf("the reading watch saw %d of %d objects in 3 min", n, unreadObjects)
				return
			}
		}
		seen <- nil
	}()

	before := c.usage()
	sm := c.sample()
	value := strings.Repeat("x", unreadObjectBytes)
	next := make(chan int)
	created := make(chan error, unreadObjects)
	var writers sync.WaitGroup
	for i := 0; i < 4; i++ {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for n := range next {
				_, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unread-%03d", n)},
					Data:       map[string]string{"v": value},
				}, metav1.CreateOptions{})
				created <- err
			}
		}()
	}
	for n := 0; n < unreadObjects; n++ {
		next <- n
	}
	close(next)
	writers.Wait()
	close(created)
	for err := range created {
		if err != nil {
			t.Fatalf("creating a ConfigMap in %s: %v", c.member.Name, err)
		}
	}
	if err := <-seen; err != nil {
		t.Fatal(err)
	}
	peak := sm.peak()
	written := int64(unreadObjects) * unreadObjectBytes
	t.Logf("%d MiB written to %s while a watch of it went unread; the reading watch saw every object; switchboard's heap in use: %.1f MiB before, at most %.1f MiB while (RSS %.1f, then at most %.1f MiB)",
		written>>20, c.member.Name, float64(before.heap)/(1<<20), float64(peak.heap)/(1<<20), float64(before.rss)/(1<<20), float64(peak.rss)/(1<<20))
	if grew := peak.heap - before.heap; grew > written/2 {
		t.Errorf("switchboard's heap grew by %.1f MiB while %d MiB went to a watch that was not read: it buffers what the caller does not take", float64(grew)/(1<<20), written>>20)
	}
	c.checkServes("with a watch that is not read")
	if err := admin.CoreV1().ConfigMaps(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Errorf("deleting the ConfigMaps: %v", err)
	}
}

// droppedStreams opens streamSessions exec and port-forward sessions
// through switchboard, a quarter of each kind: exec over SPDY and over
// WebSocket, port-forward over SPDY and over SPDY tunnelled in WebSocket.
// Each sees its bytes echoed, then the client drops it while the
// command runs.
func (c *clientsRun) droppedStreams(t *testing.T) {
	before := c.usage()
	sm := c.sample()
	start := time.Now()
	next := make(chan int)
	var (
		mu       sync.Mutex
		failures = map[string]int{}
		examples []string
		wg       sync.WaitGroup
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := c.session(i); err != nil {
					mu.Lock()
					failures[sessionKinds[i%len(sessionKinds)]]++
					if len(examples) < 5 {
						examples = append(examples, fmt.Sprintf("session %d (%s): %v", i, sessionKinds[i%len(sessionKinds)], err))
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < streamSessions; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	peak := sm.peak()
	t.Logf("%d sessions opened and dropped in %.1f s; before: %s; peak: %s", streamSessions, time.Since(start).Seconds(), before, peak)
	if len(failures) > 0 {
		t.Errorf("failed sessions by kind: %v; the first: %s", failures, strings.Join(examples, "; "))
	}
	c.checkServes("after the dropped sessions")
}

var sessionKinds = []string{"exec over SPDY", "exec over WebSocket", "port-forward over SPDY", "port-forward over WebSocket"}

// session runs session kind i%4 against the member's first pod: it sends
// a line, waits for it to come back, and drops the session.
func (c *clientsRun) session(i int) error {
	pod := proxyPrefix + c.member.Name + "/proxy/api/v1/namespaces/" + c.member.PodNamespace + "/pods/" + c.member.Pods[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	line := fmt.Sprintf("session %d\n", i)
	switch i % len(sessionKinds) {
	case 0, 1:
		u, err := url.Parse(c.s.Switchboard.URL + pod + "/exec?command=cat&stdin=true&stdout=true")
		if err != nil {
			return err
		}
		var ex remotecommand.Executor
		if i%2 == 0 {
			ex, err = remotecommand.NewSPDYExecutor(c.config, http.MethodPost, u)
		} else {
			ex, err = remotecommand.NewWebSocketExecutor(c.config, http.MethodGet, u.String())
		}
		if err != nil {
			return err
		}
		return execDropped(ctx, ex, line)
	default:
		u, err := url.Parse(c.s.Switchboard.URL + pod + "/portforward")
		if err != nil {
			return err
		}
		var dialer httpstream.Dialer
		if i%2 == 0 {
			rt, upgrader, err := spdy.RoundTripperFor(c.config)
			if err != nil {
				return err
			}
			dialer = spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
		} else if dialer, err = portforward.NewSPDYOverWebsocketDialerForStreaming(u, c.config); err != nil {
			return err
		}
		return forwardDropped(ctx, dialer, line)
	}
}

// execDropped runs cat in the pod, sends line, waits for it on stdout, and
// then ends the session while cat still runs.
func execDropped(ctx context.Context, ex remotecommand.Executor, line string) error {
	stdin, feed := io.Pipe()
	defer func() { _ = feed.Close() }()
	echoed := &lineWaiter{want: line, seen: make(chan struct{})}
	streamCtx, drop := context.WithCancel(ctx)
	defer drop()
	ended := make(chan error, 1)
	go func() {
		ended <- ex.StreamWithContext(streamCtx, remotecommand.StreamOptions{Stdin: stdin, Stdout: echoed})
	}()
	go func() { _, _ = io.WriteString(feed, line) }()
	select {
	case <-echoed.seen:
	case err := <-ended:
		return fmt.Errorf("the session ended before cat echoed the line: %w", err)
	case <-ctx.Done():
		return errors.New("cat did not echo the line within a minute")
	}
	drop()
	select {
	case err := <-ended:
		_ = err // a dropped session ends with its context's error
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("the client's stream did not end within 30 s of being dropped")
	}
}

// forwardDropped opens a port-forward stream to the echo port, sends line,
// reads it back, and closes the connection with the stream open.
func forwardDropped(ctx context.Context, dialer httpstream.Dialer, line string) error {
	conn, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(topology.EchoPort))
	headers.Set(corev1.PortForwardRequestIDHeader, "0")
	errorStream, err := conn.CreateStream(headers)
	if err != nil {
		return err
	}
	_ = errorStream.Close() // nothing is sent on it
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(headers)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(data, line); err != nil {
		return err
	}
	got := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(data).ReadString('\n')
		got <- s
	}()
	select {
	case s := <-got:
		if s != line {
			return fmt.Errorf("the port's echo: %q, not %q", s, line)
		}
	case <-ctx.Done():
		return errors.New("no echo within a minute")
	}
	return conn.Close()
}

// lineWaiter is a stdout that closes seen once want has been written to it.
type lineWaiter struct {
	want string
	seen chan struct{}
	mu   sync.Mutex
	buf  bytes.Buffer
	once sync.Once
}

func (l *lineWaiter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if strings.Contains(l.buf.String(), l.want) {
		l.once.Do(func() { close(l.seen) })
	}
	return len(p), nil
}
