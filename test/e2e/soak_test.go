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
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"

	"github.com/switchboard-io/switchboard/pkg/join"
	"github.com/switchboard-io/switchboard/test/topology"
)

// soakDuration is how long TestSoak runs: SOAK_DURATION (a Go duration,
// `make soak DURATION=30m`), or 3 minutes.
func soakDuration(t *testing.T) time.Duration {
	d := 3 * time.Minute
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d < time.Minute {
			t.Fatalf("SOAK_DURATION=%q: want a Go duration of at least 1m", v)
		}
	}
	return d
}

// soakOps are the kinds of request each soak worker sends in turn, through
// the hub, to one member.
var soakOps = []string{"get", "list", "watch", "logs -f", "exec", "port-forward"}

// soakAnswer is one request of the soak and how it ended.
type soakAnswer struct {
	cluster, op string
	start, end  time.Time
	err         string // "" when it worked
}

// soakFault is an injected fault: the member it hits and when.
type soakFault struct {
	name, cluster string
	start, end    time.Time
}

// TestSoak sends mixed load through the hub to both members for
// SOAK_DURATION: GET, LIST, watch, logs -f, exec and port-forward. Along
// the way member2 is unjoined and joined again, member1's credential is
// revoked and join renews it, and member2's kube-apiserver restarts. Every
// failed request must fall in a fault's window on that fault's member;
// switchboard's goroutines and descriptors must end where they were after
// warm-up, and it must not restart. It prints the errors by kind, the
// usage over time, and latency percentiles per phase.
func TestSoak(t *testing.T) {
	duration := soakDuration(t)
	ctx := context.Background()
	s := f.State
	proc := switchboardProcess(t)
	clusters := []string{"member1", "member2"}
	members := map[string]*topology.Cluster{}
	for _, name := range clusters {
		m, err := s.Member(name)
		if err != nil {
			t.Fatal(err)
		}
		members[name] = m
	}
	c := newClientsRun(t, s, proc.PID, members["member1"])
	hub := f.HubConfig(t)
	t.Cleanup(func() {
		// Whatever happened, leave both members joined and working.
		for _, name := range clusters {
			if r := plugin(t, "join", name, "--member-kubeconfig", members[name].Kubeconfig); r.Err != nil {
				t.Errorf("join %s in cleanup: %v\n%s", name, r.Err, r.Stderr)
			}
		}
	})

	var (
		mu      sync.Mutex
		answers []soakAnswer
		faults  []soakFault
		samples []usage
		times   []time.Duration
	)
	began := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	const workersPerMember = 3
	for _, name := range clusters {
		for w := range workersPerMember {
			wg.Go(func() {
				for i := w * 2; ; i++ {
					select {
					case <-done:
						return
					case <-time.After(20 * time.Millisecond):
					}
					op := soakOps[i%len(soakOps)]
					start := time.Now()
					err := soakRequest(ctx, hub, members[name], op, i)
					a := soakAnswer{cluster: name, op: op, start: start, end: time.Now()}
					if err != nil {
						a.err = err.Error()
					}
					mu.Lock()
					answers = append(answers, a)
					mu.Unlock()
				}
			})
		}
	}
	wg.Go(func() {
		for {
			if u, err := c.readUsage(); err == nil {
				mu.Lock()
				samples, times = append(samples, u), append(times, time.Since(began))
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-time.After(max(duration/36, 5*time.Second)):
			}
		}
	})
	fault := func(name, cluster string, inject func()) {
		t.Helper()
		ft := soakFault{name: name, cluster: cluster, start: time.Now()}
		inject()
		// The caches and pooled connections of the member catch up.
		time.Sleep(10 * time.Second)
		ft.end = time.Now()
		mu.Lock()
		faults = append(faults, ft)
		mu.Unlock()
		t.Logf("%s (%s): %.1f s to %.1f s", name, cluster, ft.start.Sub(began).Seconds(), ft.end.Sub(began).Seconds())
	}
	at := func(fraction float64) {
		if wait := time.Until(began.Add(time.Duration(fraction * float64(duration)))); wait > 0 {
			time.Sleep(wait)
		}
	}

	// Warm-up, then the baseline of what switchboard holds under load.
	at(0.15)
	warm := c.usage()
	t.Logf("after warm-up, %.0f s: %s", time.Since(began).Seconds(), warm)

	at(0.25)
	fault("unjoin and join", "member2", func() {
		mustPlugin(t, "unjoin", "member2", "--member-kubeconfig", members["member2"].Kubeconfig)
		time.Sleep(5 * time.Second)
		mustPlugin(t, "join", "member2", "--member-kubeconfig", members["member2"].Kubeconfig)
	})
	at(0.45)
	fault("credential revoked and renewed", "member1", func() {
		admin := f.Member(t, "member1")
		secrets, err := admin.CoreV1().Secrets(join.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range secrets.Items {
			if strings.HasPrefix(secret.Name, join.TokenSecretPrefix) {
				if err := admin.CoreV1().Secrets(join.Namespace).Delete(ctx, secret.Name, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		// kube-apiserver keeps a token's authentication for 10 s.
		time.Sleep(15 * time.Second)
		mustPlugin(t, "join", "member1", "--member-kubeconfig", members["member1"].Kubeconfig)
	})
	at(0.65)
	fault("kube-apiserver restarted", "member2", func() {
		restart := stopProcess(t, "member2-kube-apiserver")
		time.Sleep(5 * time.Second)
		restart()
		admin := f.Member(t, "member2")
		eventually(t, 2*time.Minute, func() error {
			_, err := admin.Discovery().ServerVersion()
			return err
		})
	})
	at(1)
	close(done)
	wg.Wait()
	end := time.Since(began)

	// Every error falls in a fault's window on its member.
	explained := func(a soakAnswer) string {
		for _, ft := range faults {
			if ft.cluster == a.cluster && a.end.After(ft.start) && a.start.Before(ft.end) {
				return ft.name
			}
		}
		return ""
	}
	errorsByKind := map[string]int{}
	seenKinds := map[string]bool{}
	var unexplained []string
	for _, a := range answers {
		if a.err == "" {
			continue
		}
		why := explained(a)
		errorsByKind[fmt.Sprintf("%s: %s %s: %s", orDefault(why, "UNEXPLAINED"), a.cluster, a.op, soakErrorKind(a.err))]++
		if kind := a.cluster + a.op + soakErrorKind(a.err); !seenKinds[kind] {
			// One example of each kind.
			seenKinds[kind] = true
			t.Logf("%s %s at %.1f s: %s", a.cluster, a.op, a.start.Sub(began).Seconds(), a.err)
		}
		if why == "" && len(unexplained) < 10 {
			unexplained = append(unexplained, fmt.Sprintf("%s %s at %.1f s: %s", a.cluster, a.op, a.start.Sub(began).Seconds(), a.err))
		}
	}
	kinds := make([]string, 0, len(errorsByKind))
	for k := range errorsByKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var report strings.Builder
	fmt.Fprintf(&report, "soak of %s: %d requests\nerrors by fault, member and kind:\n", end.Round(time.Second), len(answers))
	for _, k := range kinds {
		fmt.Fprintf(&report, "  %6d  %s\n", errorsByKind[k], k)
	}
	fmt.Fprintf(&report, "switchboard over time:\n")
	for i, u := range samples {
		fmt.Fprintf(&report, "  %6.0f s  %s\n", times[i].Seconds(), u)
	}
	fmt.Fprintf(&report, "latency of the requests that worked, by phase (ms: p50 p90 p99 max, count):\n")
	phases := []soakFault{{name: "warm-up", start: began, end: began.Add(time.Duration(0.15 * float64(duration)))}}
	phases = append(phases, faults...)
	fmt.Fprintf(&report, "%s", soakLatencies(answers, phases, began))
	t.Log(report.String())

	if len(unexplained) > 0 {
		t.Errorf("errors no fault explains (the first %d): \n  %s", len(unexplained), strings.Join(unexplained, "\n  "))
	}
	for _, name := range clusters {
		for _, op := range soakOps {
			if !slices.ContainsFunc(answers, func(a soakAnswer) bool { return a.cluster == name && a.op == op && a.err == "" }) {
				t.Errorf("no %s to %s worked", op, name)
			}
		}
	}
	// Flat after warm-up: once the load is gone, no more goroutines or
	// descriptors than under load right after warm-up, and RSS at most
	// a quarter more (the heap's goal follows the peak live heap).
	after := c.settled("after the soak")
	if float64(after.goroutines) > float64(warm.goroutines)*1.1 || float64(after.fds) > float64(warm.fds)*1.1 || float64(after.rss) > float64(warm.rss)*1.25 {
		t.Errorf("after the soak switchboard holds %s; after warm-up, under load, it held %s (allowed: 10%% more goroutines and descriptors, 25%% more RSS)", after, warm)
	}
	if now := switchboardProcess(t); now.PID != proc.PID {
		t.Errorf("switchboard restarted: pid %d, then %d", proc.PID, now.PID)
	}
}

// soakErrorKinds sort the soak's errors by what their message says, first
// match first.
var soakErrorKinds = []struct{ says, kind string }{
	{"rejected switchboard's credential", "503: the member rejected switchboard's credential"},
	{`clusters.cluster.switchboard.io "` + "member", "404: no such Cluster"},
	{"404", "404 from the member"},
	{"connection refused", "503: the member refused the connection"},
	{"503", "503: other"},
	{"EOF", "the stream ended early"},
}

func soakErrorKind(err string) string {
	for _, k := range soakErrorKinds {
		if strings.Contains(err, k.says) {
			return k.kind
		}
	}
	return "other"
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// soakLatencies is a table of percentiles of the requests that worked, by
// operation, in each phase and in the steady state outside them.
func soakLatencies(answers []soakAnswer, phases []soakFault, began time.Time) string {
	in := func(a soakAnswer) string {
		for _, p := range phases {
			if a.end.After(p.start) && a.start.Before(p.end) && (p.cluster == "" || p.cluster == a.cluster) {
				return p.name
			}
		}
		return "steady"
	}
	byPhase := map[string]map[string][]time.Duration{}
	for _, a := range answers {
		if a.err != "" {
			continue
		}
		p := in(a)
		if byPhase[p] == nil {
			byPhase[p] = map[string][]time.Duration{}
		}
		byPhase[p][a.op] = append(byPhase[p][a.op], a.end.Sub(a.start))
	}
	var b strings.Builder
	names := []string{"steady"}
	for _, p := range phases {
		names = append(names, p.name)
	}
	for _, p := range names {
		fmt.Fprintf(&b, "  %s\n", p)
		for _, op := range soakOps {
			ds := byPhase[p][op]
			if len(ds) == 0 {
				continue
			}
			slices.Sort(ds)
			q := func(f float64) float64 {
				return float64(ds[min(len(ds)-1, int(f*float64(len(ds))))].Microseconds()) / 1000
			}
			fmt.Fprintf(&b, "    %-12s %8.1f %8.1f %8.1f %8.1f  %d\n", op, q(0.5), q(0.9), q(0.99), q(1), len(ds))
		}
	}
	return b.String()
}

// soakRequest sends one request of kind op through the hub to m, and says
// what went wrong, if anything.
func soakRequest(ctx context.Context, hub *rest.Config, m *topology.Cluster, op string, i int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	base := proxyPrefix + m.Name + "/proxy/api/v1/namespaces/" + m.PodNamespace
	pod := base + "/pods/" + m.Pods[i%len(m.Pods)]
	check := func(path string) error {
		code, body, err := rawRequest(hub, http.MethodGet, path, nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, describe(code, body, err))
		}
		return nil
	}
	switch op {
	case "get":
		return check(base)
	case "list":
		return check(base + "/pods")
	case "watch":
		// A short watch, read to its end.
		return check(base + "/pods?watch=true&timeoutSeconds=2")
	case "logs -f":
		return followLog(ctx, hub, pod+"/log?follow=true")
	case "exec":
		u, err := url.Parse(hub.Host + pod + "/exec?command=cat&stdin=true&stdout=true")
		if err != nil {
			return err
		}
		ex, err := remotecommand.NewWebSocketExecutor(hub, http.MethodGet, u.String())
		if i%2 == 0 {
			ex, err = remotecommand.NewSPDYExecutor(hub, http.MethodPost, u)
		}
		if err != nil {
			return err
		}
		return execDropped(ctx, ex, fmt.Sprintf("soak %d\n", i))
	default:
		u, err := url.Parse(hub.Host + pod + "/portforward")
		if err != nil {
			return err
		}
		rt, upgrader, err := spdy.RoundTripperFor(hub)
		if err != nil {
			return err
		}
		dialer := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
		if i%2 == 1 {
			if dialer, err = portforward.NewSPDYOverWebsocketDialerForStreaming(u, hub); err != nil {
				return err
			}
		}
		return forwardDropped(ctx, dialer, fmt.Sprintf("soak %d\n", i))
	}
}

// followLog follows a pod's log until its first line comes, then stops.
func followLog(ctx context.Context, config *rest.Config, path string) error {
	client, err := rawClient(config)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, config.Host+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: %s", path, describe(resp.StatusCode, string(body), nil))
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return fmt.Errorf("GET %s: reading the first line: %w", path, err)
	}
	if !strings.Contains(line, topology.LogLine) {
		return fmt.Errorf("GET %s: the first line is %q, not one of the pod's log", path, line)
	}
	return nil
}
