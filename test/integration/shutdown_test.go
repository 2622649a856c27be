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

package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// shutdownDelay is --shutdown-delay-duration: how long the server keeps
// serving, with /readyz failing, after SIGTERM.
const shutdownDelay = 2 * time.Second

// getResult is one GET of the Cluster list made while the server shuts down.
type getResult struct {
	start, end time.Time
	code       int    // 0 when no response arrived
	retryAfter string // the Retry-After header
	err        error  // no response, or the body was cut short
}

// healthSample is one look at the server's health endpoints and listener.
type healthSample struct {
	at            time.Time
	readyz, livez int // 0 when no response arrived
	listening     bool
}

// TestGracefulShutdown runs the real binary on an embedded etcd, sends it
// SIGTERM while a watch is open and GETs keep coming, and checks the
// graceful termination k8s.io/apiserver promises:
//
//   - during --shutdown-delay-duration /readyz fails while /livez passes,
//     and requests are still served;
//   - no request that reached the server is failed with anything but
//     200, or 429/503 with Retry-After (a client should retry elsewhere);
//     requests that find the listener closed get "connection refused";
//   - the open watch ends cleanly: its result channel closes, no error event;
//   - the process exits with code 0 within a minute and leaves nothing
//     behind: no process in its group, the embedded etcd's socket gone or
//     dead, the data directory's lock released, the port closed.
func TestGracefulShutdown(t *testing.T) {
	p := newPKI(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	s := startProcess(t, p,
		"--data-dir="+dataDir,
		"--shutdown-delay-duration="+shutdownDelay.String(),
		"--shutdown-watch-termination-grace-period=10s",
		"-v=1", // logs each [graceful-termination] event
	)
	pid := s.cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The embedded etcd runs inside the process, not as a child.
	if kids := children(pid); len(kids) > 0 {
		t.Errorf("switchboard-apiserver has child processes %v; the embedded etcd should run in-process", kids)
	}

	clusters := s.clientset().ClusterV1alpha1().Clusters()
	for _, name := range []string{"member1", "member2"} {
		if _, err := clusters.Create(ctx, newCluster(name, "https://10.0.0.12:6443"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// A watch, established: it has delivered the existing objects.
	w, err := clusters.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for seen := map[string]bool{}; len(seen) < 2; {
		ev := nextEvent(t, w)
		if c, ok := ev.Object.(*v1alpha1.Cluster); ok && ev.Type == watch.Added {
			seen[c.Name] = true
		}
	}
	var mu sync.Mutex // guards watchErrors, gets and samples
	var watchErrors []string
	watchClosed := make(chan time.Time, 1)
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				mu.Lock()
				watchErrors = append(watchErrors, fmt.Sprintf("%+v", ev.Object))
				mu.Unlock()
			}
		}
		watchClosed <- time.Now()
	}()

	stop := make(chan struct{})
	var workers sync.WaitGroup
	stopWorkers := sync.OnceFunc(func() {
		close(stop)
		workers.Wait()
	})
	defer stopWorkers()

	// GETs of the list, back to back, over keep-alive (HTTP/2) connections.
	var gets []getResult
	getClient := s.httpClient(s.adminConfig())
	for range 2 {
		workers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := listClusters(ctx, getClient, s.host)
				mu.Lock()
				gets = append(gets, r)
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		})
	}

	// The health endpoints, and whether the port still accepts connections.
	var samples []healthSample
	healthClient := s.httpClient(s.adminConfig())
	workers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			sample := healthSample{at: time.Now()}
			sample.readyz, _ = probe(ctx, healthClient, s.host+"/readyz")
			sample.livez, _ = probe(ctx, healthClient, s.host+"/livez")
			if conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.port), 5*time.Second); err == nil {
				sample.listening = true
				_ = conn.Close()
			}
			mu.Lock()
			samples = append(samples, sample)
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	})

	// Let the load run before the signal.
	waitFor(t, time.Minute, "GETs before SIGTERM", func() bool {
		mu.Lock()
		defer mu.Unlock()
		ok := 0
		for _, r := range gets {
			if r.code == http.StatusOK {
				ok++
			}
		}
		return ok >= 10 && len(samples) >= 3
	})

	signalled := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, exited := s.waitExit(time.Minute)
	exitedAt := time.Now()
	if !exited {
		t.Fatalf("switchboard-apiserver still runs a minute after SIGTERM")
	}
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0 (%v)", code, s.waitErr)
	}

	var watchEnded time.Time
	select {
	case watchEnded = <-watchClosed:
	case <-time.After(30 * time.Second):
		t.Errorf("the watch was still open 30s after the server exited")
	}
	// A little more load after the exit, to see what callers get then.
	time.Sleep(300 * time.Millisecond)
	stopWorkers()
	mu.Lock()
	defer mu.Unlock()

	since := func(at time.Time) string {
		if at.IsZero() {
			return "never"
		}
		return at.Sub(signalled).Round(time.Millisecond).String()
	}

	// Health: /readyz goes red at once and stays red, while /livez answers
	// for the shutdown delay.
	var readyzFailed, listenerClosed time.Time
	livezWhileNotReady, readyAgain := 0, 0
	for _, sample := range samples {
		if sample.at.Before(signalled) {
			continue
		}
		if sample.readyz != http.StatusOK && readyzFailed.IsZero() {
			readyzFailed = sample.at
		}
		if !readyzFailed.IsZero() && sample.readyz == http.StatusOK {
			readyAgain++
		}
		if sample.readyz != http.StatusOK && sample.livez == http.StatusOK {
			livezWhileNotReady++
		}
		if !sample.listening && listenerClosed.IsZero() {
			listenerClosed = sample.at
		}
	}
	if readyzFailed.IsZero() {
		t.Errorf("/readyz never failed after SIGTERM")
	}
	if readyAgain > 0 {
		t.Errorf("/readyz passed %d times after it had failed during shutdown", readyAgain)
	}
	if livezWhileNotReady == 0 {
		t.Errorf("no sample had /livez passing while /readyz failed during the shutdown delay")
	}

	// GETs.
	var okBefore, okAfter, refused int
	retryable := map[string]int{} // "503 Retry-After: 1" -> count
	var lastOK time.Time
	var bad []string
	for _, r := range gets {
		switch {
		case r.err == nil && r.code == http.StatusOK:
			if r.start.Before(signalled) {
				okBefore++
			} else {
				okAfter++
			}
			if r.end.After(lastOK) {
				lastOK = r.end
			}
		case r.err == nil && (r.code == http.StatusTooManyRequests || r.code == http.StatusServiceUnavailable) && r.retryAfter != "":
			retryable[fmt.Sprintf("%d Retry-After: %s", r.code, r.retryAfter)]++
		case r.err != nil && r.code == 0 && errors.Is(r.err, syscall.ECONNREFUSED):
			// The listener was closed: the request never reached the server.
			refused++
		default:
			bad = append(bad, fmt.Sprintf("started %s, ended %s: code %d, Retry-After %q, error %v",
				since(r.start), since(r.end), r.code, r.retryAfter, r.err))
		}
	}
	if okAfter == 0 {
		t.Errorf("no GET started after SIGTERM succeeded: requests must be served during the shutdown delay")
	}
	for _, b := range bad {
		t.Errorf("GET during shutdown: %s", b)
	}

	// The watch ended cleanly, after the signal.
	if len(watchErrors) > 0 {
		t.Errorf("the watch delivered error events while the server shut down: %v", watchErrors)
	}
	// The server sleeps through the delay after it gets the signal, so this
	// bound holds however loaded the machine is.
	if !watchEnded.IsZero() && watchEnded.Before(signalled.Add(shutdownDelay)) {
		t.Errorf("the watch ended %s after SIGTERM, within the shutdown delay of %s, while the server should still serve", since(watchEnded), shutdownDelay)
	}

	t.Logf("after SIGTERM: /readyz failed at %s, listener closed at %s, watch ended at %s, process exited at %s (code %d); "+
		"%d health samples had /livez 200 while /readyz failed",
		since(readyzFailed), since(listenerClosed), since(watchEnded), since(exitedAt), code, livezWhileNotReady)
	t.Logf("GETs: %d OK before SIGTERM, %d OK started after it (last OK answer at %s), 429/503 with Retry-After %v, "+
		"%d connection refused, %d other failures", okBefore, okAfter, since(lastOK), retryable, refused, len(bad))
	for _, line := range strings.Split(s.logTail(100000), "\n") {
		if strings.Contains(line, "graceful-termination") {
			t.Log(line)
		}
	}

	// Nothing is left behind.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still exists after exiting: kill -0 = %v", pid, err)
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("processes of group %d remain after switchboard-apiserver exited: kill -0 = %v", pid, err)
	}
	socket := filepath.Join(dataDir, "etcd.sock")
	if _, err := os.Stat(socket); err == nil {
		conn, err := net.DialTimeout("unix", socket, 5*time.Second)
		if err == nil {
			_ = conn.Close()
			t.Errorf("the embedded etcd's socket %s still accepts connections", socket)
		} else {
			t.Logf("the embedded etcd's socket file remains but refuses connections: %v", err)
		}
	} else if os.IsNotExist(err) {
		t.Logf("the embedded etcd's socket %s was removed", socket)
	} else {
		t.Errorf("stat %s: %v", socket, err)
	}
	lock, err := os.OpenFile(filepath.Join(dataDir, "switchboard.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Errorf("opening the data directory's lock file: %v", err)
	} else {
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			t.Errorf("the data directory is still locked: %v", err)
		}
		_ = lock.Close()
	}
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.port), 5*time.Second); err == nil {
		_ = conn.Close()
		t.Errorf("port %d still accepts connections", s.port)
	}
}

// listClusters makes one GET of the Cluster list and reads the whole answer.
func listClusters(ctx context.Context, client *http.Client, host string) (r getResult) {
	r.start = time.Now()
	defer func() { r.end = time.Now() }()
	reqCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, host+"/apis/cluster.switchboard.io/v1alpha1/clusters", nil)
	if err != nil {
		r.err = err
		return r
	}
	resp, err := client.Do(req)
	if err != nil {
		r.err = err
		return r
	}
	defer func() { _ = resp.Body.Close() }()
	r.code = resp.StatusCode
	r.retryAfter = resp.Header.Get("Retry-After")
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		r.err = fmt.Errorf("reading the body of a %d answer: %w", resp.StatusCode, err)
	}
	return r
}

// probe GETs a health endpoint with a short timeout.
func probe(ctx context.Context, client *http.Client, url string) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return get(ctx, client, url)
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
