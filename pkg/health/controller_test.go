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

package health

// The controller's state machine, driven one sync at a time: no workers, no
// informers. The test plays the informer: after each sync it copies what the
// fake client stored back into the lister's indexer.

import (
	"context"
	"errors"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	corev1listers "k8s.io/client-go/listers/core/v1"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/component-base/metrics/testutil"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned/fake"
	listers "github.com/switchboard-io/switchboard/pkg/generated/listers/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/reach"
)

const testHeartbeat = time.Minute

var clustersResource = v1alpha1.SchemeGroupVersion.WithResource("clusters")

type harness struct {
	t        *testing.T
	name     string
	member   *member
	clusters cache.Indexer
	secrets  cache.Indexer
	client   *fake.Clientset
	recorder *events.FakeRecorder
	tracker  *Tracker
	c        *Controller
	leader   atomic.Bool
	rv       int
}

// newHarness is a controller for one Cluster, name, whose member answers
// healthily, with a token Secret trusting it; the replica leads.
func newHarness(t *testing.T, name string) *harness {
	t.Helper()
	h := &harness{
		t:        t,
		name:     name,
		member:   newMember(t, nil),
		clusters: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		secrets:  cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}),
		recorder: events.NewFakeRecorder(100),
		tracker:  NewTracker(),
		rv:       10,
	}
	h.leader.Store(true)
	cl := newCluster(name, h.member.url())
	h.putCluster(cl)
	h.putSecret(tokenSecret(name, h.member.caPEM()))
	h.client = fake.NewSimpleClientset(cl)
	h.c = NewController(Config{
		Options:    Options{Interval: time.Hour, Timeout: testTimeout, Workers: 1, Heartbeat: testHeartbeat},
		Clusters:   listers.NewClusterLister(h.clusters),
		Secrets:    corev1listers.NewSecretLister(h.secrets).Secrets(testNamespace),
		Transports: reach.NewTransportCache(reach.Config{DialTimeout: testDialTimeout}),
		Tracker:    h.tracker,
		Status:     h.client.ClusterV1alpha1(),
		Recorder:   h.recorder,
		IsLeader:   h.leader.Load,
	})
	t.Cleanup(h.c.queue.ShutDown)
	return h
}

func (h *harness) nextRV() string {
	h.rv++
	return strconv.Itoa(h.rv)
}

func (h *harness) putCluster(cl *v1alpha1.Cluster) {
	h.t.Helper()
	cl = cl.DeepCopy()
	cl.ResourceVersion = h.nextRV()
	if err := h.clusters.Update(cl); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) putSecret(s *corev1.Secret) {
	h.t.Helper()
	s = s.DeepCopy()
	s.ResourceVersion = h.nextRV()
	if err := h.secrets.Update(s); err != nil {
		h.t.Fatal(err)
	}
}

// sync runs one sync of the harness' Cluster and, like an informer, copies
// the stored Cluster back into the lister.
func (h *harness) sync() {
	h.t.Helper()
	if err := h.c.sync(context.Background(), h.name); err != nil {
		h.t.Fatalf("sync: %v", err)
	}
	obj, err := h.client.Tracker().Get(clustersResource, "", h.name)
	if err != nil {
		h.t.Fatalf("the fake client lost the Cluster: %v", err)
	}
	cl := obj.(*v1alpha1.Cluster)
	if _, exists, _ := h.clusters.GetByKey(h.name); exists {
		h.putCluster(cl)
	}
}

// status is the Cluster's status as last written.
func (h *harness) status() v1alpha1.ClusterStatus {
	h.t.Helper()
	obj, err := h.client.Tracker().Get(clustersResource, "", h.name)
	if err != nil {
		h.t.Fatal(err)
	}
	return obj.(*v1alpha1.Cluster).Status
}

// statusWrites counts UpdateStatus calls; it fails the test on any other write.
func (h *harness) statusWrites() int {
	h.t.Helper()
	n := 0
	for _, a := range h.client.Actions() {
		switch {
		case a.GetVerb() == "update" && a.GetSubresource() == "status":
			n++
		case a.GetVerb() == "get" || a.GetVerb() == "list" || a.GetVerb() == "watch":
		default:
			h.t.Errorf("unexpected client action %s %s/%s", a.GetVerb(), a.GetResource().Resource, a.GetSubresource())
		}
	}
	return n
}

// events drains the events emitted so far.
func (h *harness) events() []string {
	var got []string
	for {
		select {
		case e := <-h.recorder.Events:
			got = append(got, e)
		default:
			return got
		}
	}
}

// expectStep checks the writes and events of the latest sync: writes is how
// many UpdateStatus calls there must be in all; event is the prefix of the
// one event it must have emitted, or "" for none.
func (h *harness) expectStep(step string, writes int, event string) {
	h.t.Helper()
	if got := h.statusWrites(); got != writes {
		h.t.Errorf("%s: %d status writes in all, want %d", step, got, writes)
	}
	got := h.events()
	switch {
	case event == "" && len(got) != 0:
		h.t.Errorf("%s: events %q, want none", step, got)
	case event != "" && (len(got) != 1 || !strings.HasPrefix(got[0], event)):
		h.t.Errorf("%s: events %q, want exactly one starting %q", step, got, event)
	}
}

func condition(t *testing.T, status v1alpha1.ClusterStatus, conditionType string) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(status.Conditions, conditionType)
	if c == nil {
		t.Fatalf("no %s condition in %+v", conditionType, status.Conditions)
		return metav1.Condition{}
	}
	return *c
}

func checkCondition(t *testing.T, status v1alpha1.ClusterStatus, conditionType string, want metav1.ConditionStatus, reason string, message ...string) metav1.Condition {
	t.Helper()
	c := condition(t, status, conditionType)
	if c.Status != want || c.Reason != reason {
		t.Errorf("%s = %s/%s, want %s/%s (message %q)", conditionType, c.Status, c.Reason, want, reason, c.Message)
	}
	if c.ObservedGeneration != 3 {
		t.Errorf("%s observedGeneration = %d, want 3", conditionType, c.ObservedGeneration)
	}
	if c.LastTransitionTime.IsZero() {
		t.Errorf("%s has no lastTransitionTime", conditionType)
	}
	for _, m := range message {
		if !strings.Contains(c.Message, m) {
			t.Errorf("%s message %q does not contain %q", conditionType, c.Message, m)
		}
	}
	return c
}

func checkUp(t *testing.T, status v1alpha1.ClusterStatus) {
	t.Helper()
	checkCondition(t, status, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonProbed)
	checkCondition(t, status, v1alpha1.ConditionCredentialsValid, metav1.ConditionTrue, v1alpha1.ReasonProbed)
}

func checkDown(t *testing.T, status v1alpha1.ClusterStatus) {
	t.Helper()
	checkCondition(t, status, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonUnreachable, "cannot be reached")
	checkCondition(t, status, v1alpha1.ConditionCredentialsValid, metav1.ConditionUnknown, v1alpha1.ReasonUnreachable)
}

func TestControllerMemberUp(t *testing.T) {
	h := newHarness(t, "up")
	start := time.Now()
	h.sync()

	h.expectStep("first sync", 1, "Normal Probed Ready=True")
	status := h.status()
	checkUp(t, status)
	if status.KubernetesVersion != memberVersion {
		t.Errorf("kubernetesVersion = %q, want %q", status.KubernetesVersion, memberVersion)
	}
	if status.LastProbeTime == nil {
		t.Fatal("no lastProbeTime")
	}
	if at := status.LastProbeTime.Time; at.Before(start) || at.After(time.Now()) {
		t.Errorf("lastProbeTime = %v, want the probe's time", status.LastProbeTime)
	}
	if status.ProbeLatency == nil || status.ProbeLatency.Duration <= 0 {
		t.Errorf("probeLatency = %v, want > 0", status.ProbeLatency)
	}
	state, ok := h.tracker.Get(h.name)
	if !ok || state.Probes != 1 || state.Last.ReadyReason != v1alpha1.ReasonProbed {
		t.Errorf("tracker state = %+v, %v", state, ok)
	}
	if _, _, down := h.c.Unreachable(h.name); down {
		t.Error("Unreachable says down for a healthy member")
	}
	checkProbeHeaders(t, h.member.requests())
	// The next probe is scheduled, not queued now.
	if n := h.c.queue.Len(); n != 0 {
		t.Errorf("queue length after a sync = %d, want 0 (the next probe is an interval away)", n)
	}
}

func TestControllerUnchangedStatusIsWrittenOnlyOnHeartbeat(t *testing.T) {
	h := newHarness(t, "unchanged")
	h.sync()
	h.expectStep("first sync", 1, "Normal Probed")
	first := h.status()
	firstReady := condition(t, first, v1alpha1.ConditionReady)

	h.sync()
	h.expectStep("same answer, heartbeat not due", 1, "")
	if state, _ := h.tracker.Get(h.name); state.Probes != 2 {
		t.Errorf("the second sync did not probe: Probes = %d", state.Probes)
	}

	h.c.now = func() time.Time { return time.Now().Add(testHeartbeat / 2) }
	h.sync()
	h.expectStep("same answer, half the heartbeat later", 1, "")

	h.c.now = func() time.Time { return time.Now().Add(testHeartbeat + time.Second) }
	h.sync()
	h.expectStep("same answer, heartbeat due", 2, "")
	second := h.status()
	checkUp(t, second)
	if !second.LastProbeTime.After(first.LastProbeTime.Time) {
		t.Errorf("lastProbeTime did not move: %v then %v", first.LastProbeTime, second.LastProbeTime)
	}
	if second.ProbeLatency == nil {
		t.Error("the heartbeat dropped probeLatency")
	}
	if got := condition(t, second, v1alpha1.ConditionReady).LastTransitionTime; !got.Equal(&firstReady.LastTransitionTime) {
		t.Errorf("the heartbeat moved Ready's lastTransitionTime: %v then %v", firstReady.LastTransitionTime, got)
	}
}

func TestControllerMemberDown(t *testing.T) {
	h := newHarness(t, "down")
	h.sync()
	h.expectStep("up", 1, "Normal Probed")

	h.member.stop()
	h.sync()
	h.expectStep("down", 2, "Warning Unreachable Ready=False")
	status := h.status()
	checkDown(t, status)
	if status.KubernetesVersion != memberVersion {
		t.Errorf("kubernetesVersion = %q, want the last known %q", status.KubernetesVersion, memberVersion)
	}

	last, down := h.tracker.Down(h.name)
	if !down {
		t.Fatal("the tracker does not say the member is down")
	}
	message, at, down := h.c.Unreachable(h.name)
	if !down || message != last.Message || !at.Equal(last.Time) {
		t.Errorf("Unreachable = %q, %v, %v; want %q, %v, true", message, at, down, last.Message, last.Time)
	}
	if !strings.Contains(message, "cannot be reached") {
		t.Errorf("Unreachable message %q", message)
	}
	if ready := condition(t, status, v1alpha1.ConditionReady); ready.Message != message || !status.LastProbeTime.Time.Equal(at) {
		t.Errorf("the status (%q at %v) is not the tracker's result (%q at %v)", ready.Message, status.LastProbeTime, message, at)
	}

	h.sync()
	h.expectStep("still down", 2, "")
}

// resettingEndpoint is an https endpoint whose listener accepts
// connections and resets them, as a load balancer in front of a dead API
// server may.
func resettingEndpoint(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.(*net.TCPConn).SetLinger(0)
			_, _ = conn.Read(make([]byte, 16))
			_ = conn.Close()
		}
	}()
	return "https://" + ln.Addr().String()
}

// setEndpoint points the Cluster elsewhere, in the client and the lister.
func (h *harness) setEndpoint(endpoint string) {
	h.t.Helper()
	obj, err := h.client.Tracker().Get(clustersResource, "", h.name)
	if err != nil {
		h.t.Fatal(err)
	}
	cl := obj.(*v1alpha1.Cluster).DeepCopy()
	cl.Spec.Endpoint = endpoint
	if err := h.client.Tracker().Update(clustersResource, cl, ""); err != nil {
		h.t.Fatal(err)
	}
	h.putCluster(cl)
}

// A member that keeps failing the same way is written once, not on every
// probe: the message must not change from one probe to the next.
func TestControllerResettingMemberIsWrittenOnce(t *testing.T) {
	h := newHarness(t, "resetting")
	h.setEndpoint(resettingEndpoint(t))
	h.sync()
	h.expectStep("first probe", 1, "Warning Unreachable")
	checkDown(t, h.status())
	first := condition(t, h.status(), v1alpha1.ConditionReady).Message

	h.sync()
	h.expectStep("second probe, same failure, heartbeat not due", 1, "")
	if second, _ := h.tracker.Get(h.name); second.Last.Message != first {
		t.Errorf("the same failure reads differently from one probe to the next:\n %q\n %q", first, second.Last.Message)
	}
}

func TestControllerFlapping(t *testing.T) {
	h := newHarness(t, "flapping")
	writes := 0
	var lastTransition metav1.Time
	for i, up := range []bool{true, false, true, false} {
		step := "up"
		if !up {
			step = "down"
		}
		step = strconv.Itoa(i) + ":" + step
		if up && i > 0 {
			h.member.start()
		}
		if !up {
			h.member.stop()
		}

		h.sync()
		writes++
		if up {
			h.expectStep(step, writes, "Normal Probed Ready=True")
			checkUp(t, h.status())
		} else {
			h.expectStep(step, writes, "Warning Unreachable Ready=False")
			checkDown(t, h.status())
		}
		if _, down := h.tracker.Down(h.name); down == up {
			t.Errorf("%s: tracker Down = %v", step, down)
		}
		ready := condition(t, h.status(), v1alpha1.ConditionReady)
		if ready.LastTransitionTime.Equal(&lastTransition) {
			t.Errorf("%s: Ready's lastTransitionTime did not change (%v)", step, lastTransition)
		}
		lastTransition = ready.LastTransitionTime

		// The same answer again: nothing written, no event, no transition.
		h.sync()
		h.expectStep(step+" again", writes, "")
		if got := condition(t, h.status(), v1alpha1.ConditionReady).LastTransitionTime; !got.Equal(&lastTransition) {
			t.Errorf("%s again: Ready's lastTransitionTime moved from %v to %v", step, lastTransition, got)
		}
	}
}

func TestControllerCredentials(t *testing.T) {
	h := newHarness(t, "creds")
	h.sync()
	h.expectStep("up", 1, "Normal Probed")

	h.member.setAnswer(answerUnauthorized)
	h.sync()
	h.expectStep("401", 2, "Warning Unauthorized Ready=False")
	status := h.status()
	checkCondition(t, status, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonUnauthorized, "401")
	checkCondition(t, status, v1alpha1.ConditionCredentialsValid, metav1.ConditionFalse, v1alpha1.ReasonUnauthorized, "401")
	if _, down := h.tracker.Down(h.name); down {
		t.Error("a member that answers 401 is down")
	}

	if err := h.secrets.Delete(tokenSecret(h.name, nil)); err != nil {
		t.Fatal(err)
	}
	h.sync()
	h.expectStep("Secret deleted", 3, "Warning CredentialsMissing Ready=False")
	status = h.status()
	checkCondition(t, status, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCredentialsMissing, strconv.Quote(secretName(h.name)), "does not exist")
	checkCondition(t, status, v1alpha1.ConditionCredentialsValid, metav1.ConditionFalse, v1alpha1.ReasonCredentialsMissing, strconv.Quote(secretName(h.name)))
	if _, down := h.tracker.Down(h.name); down {
		t.Error("a member without credentials is down")
	}
	requestsBefore := len(h.member.requests())

	garbage := tokenSecret(h.name, []byte("this is not a certificate"))
	garbage.UID = types.UID("uid-garbage")
	h.putSecret(garbage)
	h.sync()
	// Ready stays False/CredentialsMissing: the message changes, so the
	// status is written, but there is no new event.
	h.expectStep("garbage ca.crt", 4, "")
	status = h.status()
	checkCondition(t, status, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCredentialsMissing,
		testNamespace+"/"+secretName(h.name), `"ca.crt" holds no PEM certificate`)
	checkCondition(t, status, v1alpha1.ConditionCredentialsValid, metav1.ConditionFalse, v1alpha1.ReasonCredentialsMissing, `"ca.crt"`)
	if got := len(h.member.requests()); got != requestsBefore {
		t.Errorf("the member was probed %d times without usable credentials", got-requestsBefore)
	}

	h.member.setAnswer(answerHealthy)
	good := tokenSecret(h.name, h.member.caPEM())
	good.UID = types.UID("uid-good-again")
	h.putSecret(good)
	h.sync()
	h.expectStep("credentials fixed", 5, "Normal Probed Ready=True")
	checkUp(t, h.status())
}

func TestControllerStatusWriteFailure(t *testing.T) {
	h := newHarness(t, "conflicted")
	var fail atomic.Bool
	fail.Store(true)
	h.client.PrependReactor("update", "clusters", func(clienttesting.Action) (bool, runtime.Object, error) {
		if fail.Load() {
			return true, nil, apierrors.NewConflict(clustersResource.GroupResource(), "conflicted", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})

	err := h.c.sync(context.Background(), h.name)
	if err == nil || !strings.Contains(err.Error(), `"conflicted"`) || !apierrors.IsConflict(err) {
		t.Fatalf("sync with a failing status write = %v, want a conflict naming the cluster", err)
	}
	// The probe counts for this replica all the same; the event waits for
	// the write.
	if state, ok := h.tracker.Get(h.name); !ok || state.Last.ReadyReason != v1alpha1.ReasonProbed {
		t.Errorf("tracker state = %+v, %v", state, ok)
	}
	h.expectStep("failed write", 1, "")
	if len(h.status().Conditions) != 0 {
		t.Errorf("conditions stored despite the failure: %+v", h.status().Conditions)
	}

	fail.Store(false)
	h.sync()
	h.expectStep("retried write", 2, "Normal Probed")
	checkUp(t, h.status())
}

func TestControllerWithoutHub(t *testing.T) {
	h := newHarness(t, "nohub")
	h.c.secrets = nil
	h.sync()
	h.expectStep("no hub", 1, "Warning CredentialsMissing")
	checkCondition(t, h.status(), v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCredentialsMissing, "without a hub")
	if n := len(h.member.requests()); n != 0 {
		t.Errorf("the member received %d requests", n)
	}
}

func TestControllerNotLeader(t *testing.T) {
	h := newHarness(t, "follower")
	h.leader.Store(false)
	h.sync()
	h.expectStep("up, not leader", 0, "")
	if state, ok := h.tracker.Get(h.name); !ok || state.Probes != 1 || state.Last.ReadyReason != v1alpha1.ReasonProbed {
		t.Errorf("tracker state = %+v, %v; want one Probed probe", state, ok)
	}
	if len(h.member.requests()) == 0 {
		t.Error("a follower did not probe")
	}

	h.member.stop()
	h.sync()
	h.expectStep("down, not leader", 0, "")
	if _, down := h.tracker.Down(h.name); !down {
		t.Error("a follower's tracker does not say the member is down")
	}
	if message, _, down := h.c.Unreachable(h.name); !down || !strings.Contains(message, "cannot be reached") {
		t.Errorf("Unreachable on a follower = %q, %v", message, down)
	}
	if len(h.status().Conditions) != 0 {
		t.Errorf("a follower wrote conditions: %+v", h.status().Conditions)
	}

	// Elected: the next sync writes what it finds.
	h.leader.Store(true)
	h.sync()
	h.expectStep("down, leader", 1, "Warning Unreachable")
	checkDown(t, h.status())
}

func TestControllerClusterDeleted(t *testing.T) {
	h := newHarness(t, "gone")
	h.member.stop()
	h.sync()
	if _, down := h.tracker.Down(h.name); !down {
		t.Fatal("the member is not down")
	}
	writes := h.statusWrites()
	h.events()

	if err := h.clusters.Delete(newCluster(h.name, "")); err != nil {
		t.Fatal(err)
	}
	if err := h.c.sync(context.Background(), h.name); err != nil {
		t.Fatalf("sync of a deleted Cluster: %v", err)
	}
	if _, ok := h.tracker.Get(h.name); ok {
		t.Error("the tracker still holds a deleted Cluster")
	}
	if _, _, down := h.c.Unreachable(h.name); down {
		t.Error("Unreachable says a deleted Cluster is down")
	}
	h.expectStep("deleted", writes, "")
}

func TestControllerProbeMetrics(t *testing.T) {
	RegisterMetrics()
	h := newHarness(t, "metrics-health")
	read := func() (probed, unreachable float64, timed uint64) {
		t.Helper()
		var err error
		if probed, err = testutil.GetCounterMetricValue(probesTotal.WithLabelValues(h.name, v1alpha1.ReasonProbed)); err != nil {
			t.Fatal(err)
		}
		if unreachable, err = testutil.GetCounterMetricValue(probesTotal.WithLabelValues(h.name, v1alpha1.ReasonUnreachable)); err != nil {
			t.Fatal(err)
		}
		if timed, err = testutil.GetHistogramMetricCount(probeDuration.WithLabelValues(h.name)); err != nil {
			t.Fatal(err)
		}
		return probed, unreachable, timed
	}
	probed0, unreachable0, timed0 := read()

	h.sync()
	h.member.stop()
	h.sync()
	h.sync()

	probed, unreachable, timed := read()
	if probed-probed0 != 1 || unreachable-unreachable0 != 2 {
		t.Errorf("probes_total rose by Probed %v, Unreachable %v; want 1, 2", probed-probed0, unreachable-unreachable0)
	}
	if timed-timed0 != 3 {
		t.Errorf("probe_duration_seconds count rose by %d, want 3", timed-timed0)
	}
}

// drain takes every key queued now.
func drain(t *testing.T, c *Controller) []string {
	t.Helper()
	var keys []string
	for c.queue.Len() > 0 {
		key, quit := c.queue.Get()
		if quit {
			t.Fatal("the queue is shut down")
		}
		keys = append(keys, key)
		c.queue.Done(key)
		c.queue.Forget(key)
	}
	sort.Strings(keys)
	return keys
}

func TestProbeSoonIsRateLimited(t *testing.T) {
	h := newHarness(t, "soon")
	base := time.Now()
	var offset atomic.Int64
	h.c.now = func() time.Time { return base.Add(time.Duration(offset.Load())) }

	h.c.ProbeSoon("a")
	h.c.ProbeSoon("a")
	if n := h.c.queue.Len(); n != 1 {
		t.Fatalf("queue length after two calls = %d, want 1", n)
	}
	if keys := drain(t, h.c); len(keys) != 1 || keys[0] != "a" {
		t.Fatalf("queued %v, want [a]", keys)
	}

	// Within the second: the queue is empty, and stays so.
	offset.Store(int64(900 * time.Millisecond))
	h.c.ProbeSoon("a")
	if n := h.c.queue.Len(); n != 0 {
		t.Errorf("queue length after a second call within a second = %d, want 0", n)
	}
	// Another member is not limited by the first.
	h.c.ProbeSoon("b")
	if keys := drain(t, h.c); len(keys) != 1 || keys[0] != "b" {
		t.Errorf("queued %v, want [b]", keys)
	}

	// A second after the first call: queued again.
	offset.Store(int64(time.Second))
	h.c.ProbeSoon("a")
	if keys := drain(t, h.c); len(keys) != 1 || keys[0] != "a" {
		t.Errorf("a second later, queued %v, want [a]", keys)
	}
	offset.Store(int64(1500 * time.Millisecond))
	h.c.ProbeSoon("a")
	if n := h.c.queue.Len(); n != 0 {
		t.Errorf("half a second after the last call, queue length = %d, want 0", n)
	}
}

func TestClusterHandler(t *testing.T) {
	h := newHarness(t, "handled")
	handler := h.c.ClusterHandler()
	cl := newCluster("handled", "https://10.0.0.1:6443")

	handler.OnAdd(cl, false)
	if keys := drain(t, h.c); len(keys) != 1 || keys[0] != "handled" {
		t.Errorf("add queued %v, want [handled]", keys)
	}

	statusOnly := cl.DeepCopy()
	statusOnly.ResourceVersion = "2"
	statusOnly.Status.KubernetesVersion = "v1.35.0"
	statusOnly.Status.LastProbeTime = &metav1.Time{Time: time.Now()}
	meta.SetStatusCondition(&statusOnly.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonProbed})
	handler.OnUpdate(cl, statusOnly)
	if keys := drain(t, h.c); len(keys) != 0 {
		t.Errorf("a status-only update queued %v", keys)
	}

	specChange := statusOnly.DeepCopy()
	specChange.ResourceVersion = "3"
	specChange.Generation++
	specChange.Spec.Endpoint = "https://10.0.0.2:6443"
	handler.OnUpdate(statusOnly, specChange)
	if keys := drain(t, h.c); len(keys) != 1 || keys[0] != "handled" {
		t.Errorf("a spec change queued %v, want [handled]", keys)
	}

	secretChange := specChange.DeepCopy()
	secretChange.Spec.CredentialsSecretRef.Name = "other"
	handler.OnUpdate(specChange, secretChange)
	if keys := drain(t, h.c); len(keys) != 1 {
		t.Errorf("a new Secret reference queued %v, want [handled]", keys)
	}

	// Deletion forgets the member, also through a tombstone.
	for _, deleted := range []any{cl, cache.DeletedFinalStateUnknown{Key: cl.Name, Obj: cl}} {
		h.tracker.Record(cl.Name, resultWith(v1alpha1.ReasonUnreachable, time.Millisecond))
		handler.OnDelete(deleted)
		if _, ok := h.tracker.Get(cl.Name); ok {
			t.Errorf("OnDelete(%T) did not forget the member", deleted)
		}
		if keys := drain(t, h.c); len(keys) != 0 {
			t.Errorf("OnDelete(%T) queued %v", deleted, keys)
		}
	}
}

func TestSecretHandler(t *testing.T) {
	h := newHarness(t, "a")
	for name, secret := range map[string]string{"b": secretName("a"), "c": "shared-elsewhere", "d": secretName("a")} {
		cl := newCluster(name, "https://10.0.0.1:6443")
		cl.Spec.CredentialsSecretRef.Name = secret
		h.putCluster(cl)
	}
	handler := h.c.SecretHandler()
	secret := tokenSecret("a", nil)
	const want = "a b d"

	handler.OnAdd(secret, false)
	if keys := drain(t, h.c); strings.Join(keys, " ") != want {
		t.Errorf("add queued %v, want %s", keys, want)
	}
	updated := secret.DeepCopy()
	updated.ResourceVersion = "2"
	handler.OnUpdate(secret, updated)
	if keys := drain(t, h.c); strings.Join(keys, " ") != want {
		t.Errorf("update queued %v, want %s", keys, want)
	}
	handler.OnDelete(secret)
	if keys := drain(t, h.c); strings.Join(keys, " ") != want {
		t.Errorf("delete queued %v, want %s", keys, want)
	}
	handler.OnDelete(cache.DeletedFinalStateUnknown{Key: testNamespace + "/" + secret.Name, Obj: secret})
	if keys := drain(t, h.c); strings.Join(keys, " ") != want {
		t.Errorf("delete through a tombstone queued %v, want %s", keys, want)
	}

	unrelated := tokenSecret("nobody", nil)
	handler.OnAdd(unrelated, false)
	if keys := drain(t, h.c); len(keys) != 0 {
		t.Errorf("an unrelated Secret queued %v", keys)
	}
	handler.OnAdd(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: secretName("a"), Namespace: testNamespace}}, false)
	if keys := drain(t, h.c); len(keys) != 0 {
		t.Errorf("a ConfigMap queued %v", keys)
	}
}
