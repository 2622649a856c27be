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

package fleet

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/switchboard-io/switchboard/pkg/clusterlabel"
)

// The outcomes of a fleet request.
const (
	// outcomeOK: every member asked answered.
	outcomeOK = "ok"
	// outcomePartial: an answer came back, and at least one member failed
	// (the Warning headers name each).
	outcomePartial = "partial"
	// outcomeError: the request failed as a whole, with a 4xx or 5xx.
	outcomeError = "error"
	// outcomeAborted: the answer had begun when a member's part of it
	// broke off, or the client went away, and it was cut off.
	outcomeAborted = "aborted"
)

var (
	requestsTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      "switchboard_fleet",
		Name:           "requests_total",
		Help:           "Requests to the fleet endpoint (fleets/<selector>/proxy), by verb (get, list, watch, discovery, refused) and outcome: ok, partial (an answer, with members that failed), error, or aborted (a get or list whose client went away or timed out, or a streamed list cut off when a member's part of it broke off or stalled).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"verb", "outcome"})
	memberFailuresTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem: "switchboard_fleet",
		Name:      "member_failures_total",
		Help: "Members that failed in a fleet request, by cluster and reason: unreachable (down, no answer, or no usable credentials), forbidden (the member refused the caller), expired (its continue token or resourceVersion is too old), or error (any other answer)." +
			clusterlabel.Help,
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "reason"})
	registerOnce sync.Once
)

// RegisterMetrics registers the fleet's metrics, once.
func RegisterMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(requestsTotal, memberFailuresTotal)
	})
}

// ForgetClusterMetrics deletes the fleet's series of a deleted Cluster.
func ForgetClusterMetrics(name string) {
	clusterlabel.Forget(name, func() {
		memberFailuresTotal.DeletePartialMatch(map[string]string{"cluster": name})
	})
}

func recordRequest(verb, outcome string) {
	requestsTotal.WithLabelValues(verb, outcome).Inc()
}

func recordMemberFailure(name, reason string) {
	clusterlabel.Record(name, "", func(label string, _ types.UID) {
		memberFailuresTotal.WithLabelValues(label, reason).Inc()
	})
}
