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

package proxy

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/endpoints/responsewriter"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/clusterlabel"
)

// Every metric here has a cluster label: one value per member cluster,
// which a hub counts in tens or hundreds, not more, and clusterlabel.Unknown.
var (
	requestsTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      "switchboard_proxy",
		Name:           "requests_total",
		Help:           "Requests proxied to member clusters, by cluster, verb and HTTP code (101 for upgraded streams)." + clusterlabel.Help,
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "verb", "code"})
	requestDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Subsystem: "switchboard_proxy",
		Name:      "request_duration_seconds",
		Help: "How long proxied requests that are not streams take, by cluster, from switchboard receiving them to the end of the answer." +
			clusterlabel.Help,
		// Fine below a millisecond, where switchboard's own overhead lies.
		Buckets:        []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	upstreamErrorsTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem: "switchboard_proxy",
		Name:      "upstream_errors_total",
		Help: "Failures between switchboard and member clusters, by cluster and reason: why the member gave no answer (dns, refused, reset, tls, timeout, other, as the Cluster status and kubectl switchboard join name them), or redirect, unauthorized, credentials, down." +
			clusterlabel.Help,
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "reason"})
	openStreams = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Subsystem:      "switchboard_proxy",
		Name:           "open_streams",
		Help:           "Long-running proxied requests (watches, logs -f, exec, attach, port-forward) open now, by cluster." + clusterlabel.Help,
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	policyRefusalsTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      "switchboard_proxy",
		Name:           "identity_policy_refusals_total",
		Help:           "Requests the Cluster's identity policy refused, by cluster: nothing of them reached the member." + clusterlabel.Help,
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	registerOnce sync.Once
)

// RegisterMetrics registers the proxy's metrics, once.
func RegisterMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(requestsTotal, requestDuration, upstreamErrorsTotal, openStreams, policyRefusalsTotal)
	})
}

// ForgetClusterMetrics deletes the proxy's series of a deleted Cluster.
func ForgetClusterMetrics(name string) {
	clusterlabel.Forget(name, func() {
		series := map[string]string{"cluster": name}
		requestsTotal.DeletePartialMatch(series)
		requestDuration.DeletePartialMatch(series)
		upstreamErrorsTotal.DeletePartialMatch(series)
		openStreams.DeletePartialMatch(series)
		policyRefusalsTotal.DeletePartialMatch(series)
	})
}

// recordPolicyRefusal counts a request the Cluster's identity policy refused.
func recordPolicyRefusal(name string) {
	clusterlabel.Record(name, "", func(label string, _ types.UID) {
		policyRefusalsTotal.WithLabelValues(label).Inc()
	})
}

// RecordUpstreamError counts a failure between switchboard and a member,
// under reason; reach.Config.OnFailure takes it.
func RecordUpstreamError(name, reason string) {
	clusterlabel.Record(name, "", func(label string, _ types.UID) {
		upstreamErrorsTotal.WithLabelValues(label, reason).Inc()
	})
}

func verbOf(ctx context.Context, req *http.Request) string {
	if info, ok := request.RequestInfoFrom(ctx); ok && info.Verb != "" {
		return info.Verb
	}
	if req == nil {
		return "unknown"
	}
	return req.Method
}

// observeRejected counts a request refused before reaching the member. A
// request for a name that no Cluster has counts as clusterlabel.Unknown.
func observeRejected(ctx context.Context, name string, err error) {
	code := http.StatusInternalServerError
	if status, ok := err.(apierrors.APIStatus); ok {
		code = int(status.Status().Code)
		if details := status.Status().Details; code == http.StatusNotFound && details != nil &&
			details.Group == cluster.GroupName && details.Kind == "clusters" {
			// The name was no Cluster's when the request came, whether
			// or not one has it by now.
			name = clusterlabel.Unknown
		}
	}
	verb := verbOf(ctx, nil)
	clusterlabel.Record(name, "", func(label string, _ types.UID) {
		requestsTotal.WithLabelValues(label, verb, strconv.Itoa(code)).Inc()
	})
}

// withMetrics counts a proxied request and times it, or counts it as an
// open stream while it lasts. It records under the Cluster's name only
// while the Cluster it started with exists: a request that outlives its
// Cluster records as clusterlabel.Unknown, and a stream's open_streams series,
// deleted with the Cluster, is not brought back to count it out.
//
// responded holds a code the recorder cannot see: that of an error the
// handler reported through the rest.Responder, which writes to the
// caller's writer directly, or of an upgrade's answer on the hijacked
// connection.
func withMetrics(name string, handler http.Handler, responded *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		info, _ := request.RequestInfoFrom(req.Context())
		long := IsLongRunning(req, info)
		var label string
		var uid types.UID
		clusterlabel.Record(name, "", func(l string, current types.UID) {
			label, uid = l, current
			if long {
				openStreams.WithLabelValues(label).Inc()
			}
		})
		if long {
			// Deferred: the handler panics with http.ErrAbortHandler when a
			// stream breaks off.
			defer clusterlabel.Record(label, uid, func(l string, _ types.UID) {
				if l == label {
					openStreams.WithLabelValues(l).Dec()
				}
			})
		}
		rec := &codeRecorder{ResponseWriter: w}
		handler.ServeHTTP(responsewriter.WrapForHTTP1Or2(rec), req)
		code := rec.code()
		if c := responded.Load(); c != 0 {
			code = int(c)
		}
		verb := verbOf(req.Context(), req)
		clusterlabel.Record(label, uid, func(l string, _ types.UID) {
			requestsTotal.WithLabelValues(l, verb, strconv.Itoa(code)).Inc()
			if !long {
				requestDuration.WithLabelValues(l).Observe(time.Since(start).Seconds())
			}
		})
	})
}

// codeRecorder remembers the status code written, keeping the writer's
// Flusher and Hijacker (through responsewriter.WrapForHTTP1Or2). The code
// of an upgrade, written to the hijacked connection, reaches withMetrics
// through responded instead (reach.Member.GuardUpgrade reads it).
type codeRecorder struct {
	http.ResponseWriter
	status int
}

func (r *codeRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *codeRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *codeRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *codeRecorder) code() int {
	if r.status == 0 {
		// An upgrade hijacks the connection and writes the member's 101 itself.
		return http.StatusSwitchingProtocols
	}
	return r.status
}
