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

import (
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// agents stands for the tunnel server.
type agents struct {
	mu        sync.Mutex
	connected bool
	since     time.Time
	never     bool
}

func (a *agents) Connected(string) (bool, time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.connected, a.since, a.never
}

func (a *agents) set(connected bool, since time.Time, never bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.connected, a.since, a.never = connected, since, never
}

// TestTunnelledMemberHealth follows a tunnelled member's agent: none yet,
// connected, gone; and the member turning Direct.
func TestTunnelledMemberHealth(t *testing.T) {
	h := newHarness(t, "edge1")
	cl := newCluster("edge1", h.member.url())
	cl.Spec.Connection = v1alpha1.ConnectionTunnel
	h.putCluster(cl)
	started := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	a := &agents{since: started, never: true}
	h.c.agents = a

	// No agent has come.
	h.sync()
	s := h.status()
	checkCondition(t, s, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonAgentDisconnected,
		`no switchboard-agent is connected for cluster "edge1"`, "since it started at 2026-12-02T01:00:00Z")
	checkCondition(t, s, v1alpha1.ConditionAgentConnected, metav1.ConditionFalse, v1alpha1.ReasonAgentDisconnected)
	checkCondition(t, s, v1alpha1.ConditionCredentialsValid, metav1.ConditionUnknown, v1alpha1.ReasonAgentDisconnected)
	if _, _, down := h.c.Unreachable("edge1"); !down {
		t.Error("a member with no agent is not down for the proxy's fast failure")
	}
	if n := len(h.member.requests()); n != 0 {
		t.Errorf("the member was probed %d times with no agent", n)
	}

	// The agent connects: probed, and the condition says since when.
	a.set(true, started.Add(time.Minute), false)
	h.sync()
	s = h.status()
	checkUp(t, s)
	checkCondition(t, s, v1alpha1.ConditionAgentConnected, metav1.ConditionTrue, v1alpha1.ReasonAgentConnected, "since 2026-12-02T01:01:00Z")
	if _, _, down := h.c.Unreachable("edge1"); down {
		t.Error("a member with its agent is down")
	}

	// The agent goes: the message says when, and does not change with
	// every probe, so the status is not rewritten for nothing.
	a.set(false, started.Add(2*time.Minute), false)
	h.sync()
	checkCondition(t, h.status(), v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonAgentDisconnected, "disconnected at 2026-12-02T01:02:00Z")
	writes := h.statusWrites()
	h.sync()
	if got := h.statusWrites(); got != writes {
		t.Errorf("a second probe with the agent still gone wrote status again (%d writes, then %d)", writes, got)
	}

	// Reached directly now: no AgentConnected condition.
	obj, _, err := h.clusters.GetByKey("edge1")
	if err != nil {
		t.Fatal(err)
	}
	direct := obj.(*v1alpha1.Cluster).DeepCopy()
	if meta.FindStatusCondition(direct.Status.Conditions, v1alpha1.ConditionAgentConnected) == nil {
		t.Fatal("the lister's Cluster lost its status")
	}
	direct.Spec.Connection = v1alpha1.ConnectionDirect
	h.putCluster(direct)
	h.sync()
	s = h.status()
	checkUp(t, s)
	if c := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionAgentConnected); c != nil {
		t.Errorf("a Direct Cluster has %+v", c)
	}
}
