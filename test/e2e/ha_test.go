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
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/test/topology"
)

const (
	// haEtcdPrefix keeps the replicas' Clusters in the topology's etcd,
	// apart from the hub's and the members' data.
	haEtcdPrefix = "/switchboard-ha"
	// haLease is the replicas' leader election Lease on the hub, apart
	// from the topology's own switchboard's.
	haLease = "switchboard-ha-status"
	// haRunLabel marks the Clusters one run of TestHA creates.
	haRunLabel = "e2e.switchboard.io/ha-run"
	// haWait bounds every wait of TestHA: generous, for a loaded 2-core machine.
	haWait = 3 * time.Minute
	// haRecovery bounds how long requests through the hub may fail after a
	// replica dies, before one succeeds again.
	haRecovery = 30 * time.Second
	// haClustersPath is the Cluster collection, on the hub or on a replica.
	haClustersPath = "/apis/cluster.switchboard.io/v1alpha1/clusters"
)

// haAddresses are the replicas' loopback addresses, all on one port.
var haAddresses = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}

// haAuditPolicy records, in each replica's own audit log, every status write
// it serves. The status writer writes through its own loopback client, so a
// replica's audit log holds exactly the status writes that replica made.
const haAuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [update, patch]
  resources:
  - group: cluster.switchboard.io
    resources: [clusters/status]
- level: None
`

// TestHA runs switchboard as an HA installation would: three replicas on an
// external etcd (the topology's, under its own prefix), behind one address
// the hub's aggregator reaches, electing one status writer through a Lease
// on the hub. The hub is pointed at the replicas for the duration of the
// test and back at the topology's own switchboard at the end.
func TestHA(t *testing.T) {
	ctx := context.Background()
	s := f.State
	hub := f.Hub(t)
	hubConfig := f.HubConfig(t)
	clusters := f.Switchboard(t).ClusterV1alpha1().Clusters()
	run := strconv.FormatInt(time.Now().UnixNano(), 36)

	// The members as the topology's switchboard knows them, read before the
	// hub is pointed elsewhere: the HA Clusters reach the same members with
	// the same credentials Secrets.
	var members []v1alpha1.Cluster
	for _, name := range f.MemberNames() {
		c, err := clusters.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("reading the topology's Cluster %s: %v", name, err)
		}
		members = append(members, *c)
	}

	began := time.Now()
	reps, err := s.StartReplicas(ctx, topology.ReplicasConfig{
		Name:        "switchboard-ha",
		Addresses:   haAddresses,
		EtcdPrefix:  haEtcdPrefix,
		LeaseName:   haLease,
		AuditPolicy: haAuditPolicy,
	})
	if err != nil {
		t.Fatalf("starting the replicas: %v", err)
	}
	t.Logf("%d replicas ready on port %d (%s) in %s", len(reps.Replicas), reps.Port, strings.Join(reps.Backends(), ", "), time.Since(began).Round(time.Millisecond))
	lb, err := topology.NewLoadBalancer(reps.Backends()...)
	if err != nil {
		_ = reps.Stop()
		t.Fatal(err)
	}
	h := &haRun{t: t, state: s, reps: reps, lb: lb, run: run, killed: map[string]time.Time{}}
	t.Cleanup(func() { h.cleanup(members[0].Name) })

	began = time.Now()
	if err := s.PointAPIServiceAt(ctx, lb.Port()); err != nil {
		t.Fatalf("pointing the hub at %s: %v", lb, err)
	}
	// The hub answers from the replicas' store, which lacks the topology's
	// Clusters, and its connections go through the load balancer.
	eventually(t, haWait, func() error {
		list, err := clusters.List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, c := range list.Items {
			if c.Name == members[0].Name {
				return fmt.Errorf("the hub still lists the topology's Cluster %s", c.Name)
			}
		}
		accepted := 0
		for _, st := range lb.Stats() {
			accepted += st.Accepted
		}
		if accepted == 0 {
			return fmt.Errorf("no connection through %s yet", lb)
		}
		// Clusters an earlier, interrupted run left in the replicas' store.
		for _, c := range list.Items {
			if err := clusters.Delete(ctx, c.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("deleted %d Clusters an earlier run left", len(list.Items))
		}
		return nil
	})
	t.Logf("the hub serves cluster.switchboard.io from the replicas through %s after %s", lb, time.Since(began).Round(time.Millisecond))

	// Clusters for the members, named apart from the topology's own.
	var haMembers []string
	for _, m := range members {
		name := "ha-" + m.Name
		haMembers = append(haMembers, name)
		if _, err := clusters.Create(ctx, h.cluster(name, m.Spec), metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating %s through the hub: %v", name, err)
		}
	}

	t.Run("the replicas share one store", func(t *testing.T) {
		client, err := s.FrontProxyClient()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range haMembers {
			viaHub, err := clusters.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range reps.Replicas {
				eventually(t, haWait, func() error {
					code, body, err := topology.FrontProxyGet(ctx, client, r.URL+haClustersPath+"/"+name)
					if err != nil {
						return err
					}
					if code != http.StatusOK {
						return fmt.Errorf("GET %s from %s: %d %s", name, r.Name, code, body)
					}
					var c v1alpha1.Cluster
					if err := json.Unmarshal([]byte(body), &c); err != nil {
						return err
					}
					if c.UID != viaHub.UID || c.Spec.Endpoint != viaHub.Spec.Endpoint {
						return fmt.Errorf("%s from %s is uid %s endpoint %s; through the hub uid %s endpoint %s",
							name, r.Name, c.UID, c.Spec.Endpoint, viaHub.UID, viaHub.Spec.Endpoint)
					}
					return nil
				})
			}
		}
	})

	t.Run("one replica writes status", func(t *testing.T) {
		for _, name := range haMembers {
			h.waitReady(clusters, name)
		}
		// The replicas proxy too: through the hub to a member.
		code, body := h.hubRaw(hubConfig, http.MethodGet, haClustersPath+"/"+haMembers[0]+"/proxy/version", nil)
		if code != http.StatusOK || !strings.Contains(body, "v1.37.2") {
			t.Errorf("GET through the hub and the replicas to %s: %d %s", haMembers[0], code, body)
		}
		leader := h.oneWriter(hub)
		t.Logf("%s writes status (Lease %s/%s)", leader.Name, "switchboard-system", haLease)
		h.checkStatusWrites()
		writers := h.statusWriters()
		if len(writers) != 1 || writers[0] != leader.Name {
			t.Errorf("status writes came from %v; want only %s, the Lease holder", writers, leader.Name)
		}
	})

	t.Run("a replica killed under load", func(t *testing.T) {
		h.killUnderLoad(hubConfig, clusters)
	})

	t.Run("the status writer killed: another takes over", func(t *testing.T) {
		old := h.oneWriter(hub)
		if err := old.Kill(); err != nil {
			t.Fatal(err)
		}
		killedAt := time.Now()
		h.killed[old.Name] = killedAt
		t.Logf("killed %s, the status writer", old.Name)
		// oneWriter counts live replicas only: another one now writes.
		next := h.oneWriter(hub)
		terms := h.terms(next)
		t.Logf("%s took over %s after the kill (lease duration 15s)", next.Name, terms[len(terms)-1].start.Sub(killedAt).Round(time.Millisecond))

		name := "ha-after-failover"
		if _, err := clusters.Create(ctx, h.cluster(name, members[0].Spec), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		h.waitReady(clusters, name)
		if w := h.writersOf(name); len(w) != 1 || w[0] != next.Name {
			t.Errorf("the status of %s was written by %v; want only %s", name, w, next.Name)
		}
		h.checkStatusWrites()
	})
}

// haRun is one run of TestHA.
type haRun struct {
	t     *testing.T
	state *topology.State
	reps  *topology.Replicas
	lb    *topology.LoadBalancer
	run   string
	// killed records when the test killed each replica.
	killed map[string]time.Time
}

func (h *haRun) cluster(name string, spec v1alpha1.ClusterSpec) *v1alpha1.Cluster {
	return &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{haRunLabel: h.run}},
		Spec:       spec,
	}
}

// cleanup deletes what the run created, points the hub back at the
// topology's own switchboard, stops the replicas and the load balancer, and
// checks that the hub serves the topology's Clusters again.
func (h *haRun) cleanup(topologyCluster string) {
	t := h.t
	ctx := context.Background()
	clusters := f.Switchboard(t).ClusterV1alpha1().Clusters()
	if list, err := clusters.List(ctx, metav1.ListOptions{LabelSelector: haRunLabel + "=" + h.run}); err == nil {
		for _, c := range list.Items {
			_ = clusters.Delete(ctx, c.Name, metav1.DeleteOptions{})
		}
	} else {
		t.Logf("cleanup: listing this run's Clusters: %v", err)
	}
	began := time.Now()
	if err := h.state.RestoreAPIService(ctx); err != nil {
		t.Errorf("pointing the hub back at the topology's switchboard: %v", err)
	}
	if err := h.lb.Close(); err != nil {
		t.Errorf("closing %s: %v", h.lb, err)
	}
	if err := h.reps.Stop(); err != nil {
		t.Errorf("stopping the replicas: %v", err)
	}
	// With the load balancer gone, only the topology's switchboard can answer.
	eventually(t, haWait, func() error {
		_, err := clusters.Get(ctx, topologyCluster, metav1.GetOptions{})
		return err
	})
	t.Logf("the hub serves the topology's switchboard again after %s", time.Since(began).Round(time.Millisecond))
	if err := f.Hub(t).CoordinationV1().Leases("switchboard-system").Delete(ctx, haLease, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting the Lease %s: %v", haLease, err)
	}
	if t.Failed() {
		for _, r := range h.reps.Replicas {
			t.Logf("%s: log %s, audit log %s", r.Name, r.Process.Log, r.AuditLog)
		}
	}
}

// waitReady waits until the Cluster is Ready through the hub.
func (h *haRun) waitReady(clusters interface {
	Get(context.Context, string, metav1.GetOptions) (*v1alpha1.Cluster, error)
}, name string) {
	h.t.Helper()
	eventually(h.t, haWait, func() error {
		c, err := clusters.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ready := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady)
		if ready == nil || ready.Status != metav1.ConditionTrue || ready.Reason != v1alpha1.ReasonProbed {
			return fmt.Errorf("cluster %s Ready = %+v", name, ready)
		}
		return nil
	})
}

// hubRaw makes one request through the hub, without client-go's retries:
// what a caller would see.
func (h *haRun) hubRaw(config *rest.Config, method, path string, body []byte) (int, string) {
	h.t.Helper()
	code, out, err := rawRequest(config, method, path, body)
	if err != nil {
		h.t.Fatalf("%s %s through the hub: %v", method, path, err)
	}
	return code, out
}

// haOp is one request of the load.
type haOp struct {
	at   time.Time
	verb string
	name string
	ok   bool
	err  string
}

// killUnderLoad creates and reads Clusters through the hub in a loop, kills
// the replica the hub's connections go to, and checks that requests recover
// and that no Cluster whose creation succeeded is lost.
func (h *haRun) killUnderLoad(hubConfig *rest.Config, clusters interface {
	List(context.Context, metav1.ListOptions) (*v1alpha1.ClusterList, error)
}) {
	t := h.t
	var (
		mu      sync.Mutex
		ops     []haOp
		created []string
		unsure  []string // creates that failed from the caller's view
	)
	record := func(op haOp) {
		mu.Lock()
		defer mu.Unlock()
		ops = append(ops, op)
	}
	successes := func(since time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, op := range ops {
			if op.ok && op.at.After(since) {
				n++
			}
		}
		return n
	}

	// One writer creates Clusters at a steady pace, and readers keep GETs
	// in flight all the time, so that the kill catches requests midway.
	const readers = 3
	stop := make(chan struct{})
	var workers sync.WaitGroup
	began := time.Now()
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	workers.Go(func() {
		for i := 0; !stopped(); i++ {
			name := fmt.Sprintf("ha-load-%s-%d", h.run, i)
			c := h.cluster(name, v1alpha1.ClusterSpec{
				// Nothing to dial: a Secret that does not exist keeps the
				// probes of hundreds of Clusters cheap.
				Endpoint:             "https://127.0.0.1:1",
				CredentialsSecretRef: v1alpha1.SecretReference{Name: "ha-load-no-such-secret"},
			})
			c.APIVersion, c.Kind = v1alpha1.SchemeGroupVersion.String(), "Cluster"
			body, _ := json.Marshal(c)
			code, out, err := rawRequest(hubConfig, http.MethodPost, haClustersPath, body)
			op := haOp{at: time.Now(), verb: "create", name: name, ok: err == nil && code == http.StatusCreated}
			if !op.ok {
				op.err = describe(code, out, err)
			}
			record(op)
			mu.Lock()
			if op.ok {
				created = append(created, name)
			} else {
				unsure = append(unsure, name)
			}
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	})
	// A LIST must hold every Cluster whose creation succeeded before the
	// LIST began, whichever replica answers it.
	var staleLists []string
	workers.Go(func() {
		selector := "?labelSelector=" + url.QueryEscape(haRunLabel+"="+h.run)
		for !stopped() {
			mu.Lock()
			before := slices.Clone(created)
			mu.Unlock()
			code, out, err := rawRequest(hubConfig, http.MethodGet, haClustersPath+selector, nil)
			op := haOp{at: time.Now(), verb: "list", ok: err == nil && code == http.StatusOK}
			if !op.ok {
				op.err = describe(code, out, err)
			} else {
				var list v1alpha1.ClusterList
				if err := json.Unmarshal([]byte(out), &list); err != nil {
					op.ok, op.err = false, err.Error()
				} else {
					listed := map[string]bool{}
					for _, c := range list.Items {
						listed[c.Name] = true
					}
					for _, name := range before {
						if !listed[name] {
							mu.Lock()
							staleLists = append(staleLists, fmt.Sprintf("a LIST at %s lacks %s, created before it", op.at.Format(time.StampMilli), name))
							mu.Unlock()
							break
						}
					}
				}
			}
			record(op)
			time.Sleep(20 * time.Millisecond)
		}
	})
	for range readers - 1 {
		workers.Go(func() {
			for !stopped() {
				mu.Lock()
				read := ""
				if n := len(created); n > 0 {
					read = created[rand.IntN(min(n, 20))+max(0, n-20)]
				}
				mu.Unlock()
				if read == "" {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				code, out, err := rawRequest(hubConfig, http.MethodGet, haClustersPath+"/"+read, nil)
				op := haOp{at: time.Now(), verb: "get", name: read, ok: err == nil && code == http.StatusOK}
				if !op.ok {
					op.err = describe(code, out, err)
				}
				record(op)
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	stopLoad := func() {
		if !stopped() {
			close(stop)
		}
		workers.Wait()
	}
	defer stopLoad()

	// Warm up: requests flow before anything dies.
	eventually(t, haWait, func() error {
		if n := successes(began); n < 20 || time.Since(began) < 5*time.Second {
			return fmt.Errorf("%d successful requests so far", n)
		}
		return nil
	})
	backend, active, ok := h.lb.Busiest()
	if !ok {
		t.Fatalf("no connection open through %s while requests flow: %v", h.lb, h.lb.Stats())
	}
	victim := h.reps.ByBackend(backend)
	statsBefore := h.lb.Stats()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	h.killed[victim.Name] = killedAt
	t.Logf("killed %s (%s, %d open connections from the hub) with SIGKILL after %s of load", victim.Name, backend, active, killedAt.Sub(began).Round(time.Millisecond))

	// Keep the load on for a while after the kill.
	eventually(t, haWait, func() error {
		if n := successes(killedAt); n < 40 || time.Since(killedAt) < 15*time.Second {
			return fmt.Errorf("%d successful requests since the kill", n)
		}
		return nil
	})
	stopLoad()
	ended := time.Now()

	mu.Lock()
	defer mu.Unlock()
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].at.Before(ops[j].at) })
	failures := 0
	var worst time.Duration
	var firstFailure, lastFailure time.Time
	messages := map[string]int{}
	for i, op := range ops {
		if op.ok {
			continue
		}
		failures++
		if firstFailure.IsZero() {
			firstFailure = op.at
		}
		lastFailure = op.at
		messages[op.verb+": "+op.err]++
		recovered := false
		for _, later := range ops[i+1:] {
			if later.ok {
				recovered = true
				if d := later.at.Sub(op.at); d > worst {
					worst = d
				}
				if later.at.Sub(op.at) > haRecovery {
					t.Errorf("the %s of %s failed at +%s and the next success came %s later (more than %s): %s",
						op.verb, op.name, op.at.Sub(killedAt).Round(time.Millisecond), later.at.Sub(op.at).Round(time.Millisecond), haRecovery, op.err)
				}
				break
			}
		}
		if !recovered {
			t.Errorf("the %s of %s failed at +%s and no request succeeded after it: %s", op.verb, op.name, op.at.Sub(killedAt).Round(time.Millisecond), op.err)
		}
	}
	tail := ops[max(0, len(ops)-5):]
	for _, op := range tail {
		if !op.ok {
			t.Errorf("the load did not end with successes: the %s of %s failed: %s", op.verb, op.name, op.err)
		}
	}
	perVerb := map[string]int{}
	for _, op := range ops {
		perVerb[op.verb]++
	}
	t.Logf("load: %d requests through the hub in %s (%d creates, %d gets, %d lists; %d creates succeeded), %d failed",
		len(ops), ended.Sub(began).Round(time.Millisecond), perVerb["create"], perVerb["get"], perVerb["list"], len(created), failures)
	if failures > 0 {
		t.Logf("failures from +%s to +%s after the kill; the longest wait for the next success was %s",
			firstFailure.Sub(killedAt).Round(time.Millisecond), lastFailure.Sub(killedAt).Round(time.Millisecond), worst.Round(time.Millisecond))
		for msg, n := range messages {
			t.Logf("  %d× %s", n, msg)
		}
	}
	t.Logf("load balancer before the kill: %s; after: %s", haStats(statsBefore), haStats(h.lb.Stats()))

	for i, msg := range staleLists {
		if i == 5 {
			t.Errorf("... and %d more stale LISTs", len(staleLists)-5)
			break
		}
		t.Error(msg)
	}
	// No Cluster whose creation succeeded is lost.
	list, err := clusters.List(context.Background(), metav1.ListOptions{LabelSelector: haRunLabel + "=" + h.run})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, c := range list.Items {
		listed[c.Name] = true
	}
	var lost []string
	for _, name := range created {
		if !listed[name] {
			lost = append(lost, name)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d Clusters created through the hub are missing after the kill: %v", len(lost), len(created), lost)
	}
	var persisted []string
	for _, name := range unsure {
		if listed[name] {
			persisted = append(persisted, name)
		}
	}
	t.Logf("all %d created Clusters are listed; of %d creates that failed for the caller, %d were stored anyway %v",
		len(created)-len(lost), len(unsure), len(persisted), persisted)
}

func haStats(stats map[string]topology.BackendStats) string {
	backends := make([]string, 0, len(stats))
	for b := range stats {
		backends = append(backends, b)
	}
	sort.Strings(backends)
	parts := make([]string, 0, len(stats))
	for _, b := range backends {
		s := stats[b]
		parts = append(parts, fmt.Sprintf("%s %d open/%d accepted/%d refused", b, s.Active, s.Accepted, s.Refused))
	}
	return strings.Join(parts, ", ")
}

// haTerm is one stretch of time during which a replica wrote status.
type haTerm struct {
	replica  string
	identity string
	start    time.Time
	// end is when it stopped (its log says so, or the test killed it);
	// zero while it still leads.
	end time.Time
}

var haLeaderLine = regexp.MustCompile(`^[IWEF](\d{4} \d{2}:\d{2}:\d{2}\.\d{6})\s+\d+ \S+\] "This replica (writes Cluster status now|no longer writes Cluster status)" identity="([^"]+)"`)

// terms reads a replica's leadership from its log (pkg/apiserver/leader.go
// logs each start and stop; the replicas log in UTC).
func (h *haRun) terms(r *topology.Replica) []haTerm {
	h.t.Helper()
	file, err := os.Open(r.Process.Log)
	if err != nil {
		h.t.Fatal(err)
	}
	defer func() { _ = file.Close() }()
	var terms []haTerm
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	year := time.Now().UTC().Year()
	for scanner.Scan() {
		m := haLeaderLine.FindStringSubmatch(scanner.Text())
		if m == nil {
			continue
		}
		at, err := time.ParseInLocation("2006 0102 15:04:05.000000", strconv.Itoa(year)+" "+m[1], time.UTC)
		if err != nil {
			h.t.Fatalf("a time in %s: %v", r.Process.Log, err)
		}
		if strings.HasPrefix(m[2], "writes") {
			terms = append(terms, haTerm{replica: r.Name, identity: m[3], start: at})
		} else if n := len(terms); n > 0 && terms[n-1].end.IsZero() {
			terms[n-1].end = at
		}
	}
	if err := scanner.Err(); err != nil {
		h.t.Fatal(err)
	}
	if n := len(terms); n > 0 && terms[n-1].end.IsZero() {
		if at, ok := h.killed[r.Name]; ok {
			terms[n-1].end = at
		} else if !r.Alive() {
			h.t.Errorf("%s exited by itself; see %s", r.Name, r.Process.Log)
			terms[n-1].end = time.Now()
		}
	}
	return terms
}

// oneWriter waits until exactly one live replica writes status, by its own
// log, and it holds the Lease on the hub, and returns it.
func (h *haRun) oneWriter(hub kubernetes.Interface) *topology.Replica {
	h.t.Helper()
	var leader *topology.Replica
	eventually(h.t, haWait, func() error {
		var leaders []*topology.Replica
		var identity string
		for _, r := range h.reps.Replicas {
			if !r.Alive() {
				continue
			}
			if terms := h.terms(r); len(terms) > 0 && terms[len(terms)-1].end.IsZero() {
				leaders = append(leaders, r)
				identity = terms[len(terms)-1].identity
			}
		}
		if len(leaders) != 1 {
			names := make([]string, 0, len(leaders))
			for _, r := range leaders {
				names = append(names, r.Name)
			}
			return fmt.Errorf("%d live replicas write status by their logs, not 1: %v", len(leaders), names)
		}
		lease, err := hub.CoordinationV1().Leases("switchboard-system").Get(context.Background(), haLease, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if holder := ptr.Deref(lease.Spec.HolderIdentity, ""); holder != identity {
			return fmt.Errorf("the Lease %s is held by %q; %s, which writes status by its log, is %q", haLease, holder, leaders[0].Name, identity)
		}
		leader = leaders[0]
		return nil
	})
	return leader
}

// haWrite is one status write a replica's audit log recorded.
type haWrite struct {
	replica string
	cluster string
	at      time.Time
	code    int
}

// statusWrites reads every replica's audit log.
func (h *haRun) statusWrites() []haWrite {
	h.t.Helper()
	var writes []haWrite
	for _, r := range h.reps.Replicas {
		data, err := os.ReadFile(r.AuditLog)
		if errors.Is(err, os.ErrNotExist) {
			continue // nothing audited yet
		}
		if err != nil {
			h.t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if line == "" {
				continue
			}
			var ev struct {
				Verb      string `json:"verb"`
				ObjectRef *struct {
					Resource    string `json:"resource"`
					Subresource string `json:"subresource"`
					Name        string `json:"name"`
				} `json:"objectRef"`
				ResponseStatus *struct {
					Code int `json:"code"`
				} `json:"responseStatus"`
				RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				h.t.Fatalf("%s: %v: %s", r.AuditLog, err, line)
			}
			if ev.ObjectRef == nil || ev.ObjectRef.Resource != "clusters" || ev.ObjectRef.Subresource != "status" {
				continue
			}
			w := haWrite{replica: r.Name, cluster: ev.ObjectRef.Name, at: ev.RequestReceivedTimestamp}
			if ev.ResponseStatus != nil {
				w.code = ev.ResponseStatus.Code
			}
			writes = append(writes, w)
		}
	}
	return writes
}

// statusWriters are the replicas whose audit logs hold status writes.
func (h *haRun) statusWriters() []string {
	return h.writersOf("")
}

// writersOf are the replicas that wrote the status of a Cluster ("" for any).
func (h *haRun) writersOf(cluster string) []string {
	var names []string
	for _, w := range h.statusWrites() {
		if (cluster == "" || w.cluster == cluster) && !slices.Contains(names, w.replica) {
			names = append(names, w.replica)
		}
	}
	sort.Strings(names)
	return names
}

// checkStatusWrites checks that one replica at a time wrote status: the
// replicas' terms as writer never overlap, and every status write a replica
// made falls inside one of its own terms.
func (h *haRun) checkStatusWrites() {
	t := h.t
	t.Helper()
	// Log lines and audit times are taken a little apart from the events
	// they record.
	const slack = 2 * time.Second
	var all []haTerm
	terms := map[string][]haTerm{}
	for _, r := range h.reps.Replicas {
		terms[r.Name] = h.terms(r)
		all = append(all, terms[r.Name]...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].start.Before(all[j].start) })
	for i := 1; i < len(all); i++ {
		prev, next := all[i-1], all[i]
		if prev.end.IsZero() || next.start.Before(prev.end.Add(-slack)) {
			t.Errorf("%s started writing status at %s while %s still did (its term %s to %s)",
				next.replica, next.start.Format(time.StampMicro), prev.replica, prev.start.Format(time.StampMicro), haEnd(prev.end))
		}
	}
	writes := h.statusWrites()
	outside := 0
	for _, w := range writes {
		inside := false
		for _, term := range terms[w.replica] {
			end := term.end
			if end.IsZero() {
				end = time.Now()
			}
			if !w.at.Before(term.start.Add(-slack)) && !w.at.After(end.Add(slack)) {
				inside = true
				break
			}
		}
		if !inside {
			outside++
			if outside <= 5 {
				t.Errorf("%s wrote the status of %s at %s (code %d) without holding the Lease by its log (terms %+v)",
					w.replica, w.cluster, w.at.Format(time.StampMicro), w.code, terms[w.replica])
			}
		}
	}
	summary := make([]string, 0, len(all))
	for _, term := range all {
		summary = append(summary, fmt.Sprintf("%s %s–%s", term.replica, term.start.Format("15:04:05.000"), haEnd(term.end)))
	}
	t.Logf("status writer terms: %s; %d status writes, %d outside their writer's term", strings.Join(summary, ", "), len(writes), outside)
}

func haEnd(end time.Time) string {
	if end.IsZero() {
		return "now"
	}
	return end.Format("15:04:05.000")
}
