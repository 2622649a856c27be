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
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
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
	listers "github.com/switchboard-io/switchboard/pkg/generated/listers/cluster/v1alpha1"
)

// UnknownCluster is the cluster label of requests for names that no Cluster
// has, and of what a request records once its Cluster is deleted. It is no
// DNS-1123 subdomain, so no Cluster can be named so.
const UnknownCluster = "<unknown>"

const clusterLabelHelp = " The cluster label has one value per existing Cluster, and " + UnknownCluster +
	" for requests to a name that no Cluster has (or no longer has, for requests that outlive their Cluster)."

// Every metric here has a cluster label: one value per member cluster,
// which a hub counts in tens or hundreds, not more, and UnknownCluster.
var (
	requestsTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      "switchboard_proxy",
		Name:           "requests_total",
		Help:           "Requests proxied to member clusters, by cluster, verb and HTTP code (101 for upgraded streams)." + clusterLabelHelp,
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "verb", "code"})
	requestDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Subsystem: "switchboard_proxy",
		Name:      "request_duration_seconds",
		Help: "How long proxied requests that are not streams take, by cluster, from switchboard receiving them to the end of the answer." +
			clusterLabelHelp,
		// Fine below a millisecond, where switchboard's own overhead lies.
		Buckets:        []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	upstreamErrorsTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem: "switchboard_proxy",
		Name:      "upstream_errors_total",
		Help: "Failures between switchboard and member clusters, by cluster and reason: how connecting failed (dns, refused, tls, timeout, other, as the Cluster status names them), or reset, redirect, unauthorized, credentials, down." +
			clusterLabelHelp,
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "reason"})
	openStreams = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Subsystem:      "switchboard_proxy",
		Name:           "open_streams",
		Help:           "Long-running proxied requests (watches, logs -f, exec, attach, port-forward) open now, by cluster." + clusterLabelHelp,
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	registerOnce sync.Once
)

// RegisterMetrics registers the proxy's metrics, once.
func RegisterMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(requestsTotal, requestDuration, upstreamErrorsTotal, openStreams)
	})
}

// clusterLabels keeps the cluster label of switchboard's metrics (the
// proxy's and the health prober's) to the names of Clusters that exist, so
// that requests for made-up names cannot grow the metrics, and so that the
// series of a deleted Cluster stay deleted.
//
// mu is held for reading while a series is written under a Cluster's name,
// once the Cluster is found in the lister, and for writing while a deleted
// Cluster's series are deleted. An informer removes a Cluster from its
// lister before it hands out the delete event, so a series written after
// the deletion finds the Cluster gone and is not written under its name:
// nothing brings the series of a deleted Cluster back, not even a request
// or a probe that was in flight when it went.
var clusterLabels struct {
	mu sync.RWMutex
	// clusters is the lister asked; nil takes every name for a Cluster's.
	clusters listers.ClusterLister
}

// LabelClusters makes the Clusters in clusters the only names the cluster
// label of switchboard's metrics holds: the proxy counts requests for any
// other name as UnknownCluster. The server calls it once, with its Cluster
// informer's lister, and calls ForgetClusterMetrics from that informer's
// delete events. Until it is called, every name is taken for a Cluster's.
func LabelClusters(clusters listers.ClusterLister) {
	clusterLabels.mu.Lock()
	defer clusterLabels.mu.Unlock()
	clusterLabels.clusters = clusters
}

// clusterUID returns the UID of the Cluster named name, and whether it
// exists. Call it with clusterLabels.mu held.
func clusterUID(name string) (types.UID, bool) {
	if name == UnknownCluster {
		return "", false
	}
	if clusterLabels.clusters == nil {
		return "", true
	}
	cl, err := clusterLabels.clusters.Get(name)
	if err != nil {
		return "", false
	}
	return cl.UID, true
}

// labelOf returns the cluster label for a series of the Cluster named name:
// name while it exists (with UID uid, when uid is set), UnknownCluster
// otherwise. Call it with clusterLabels.mu held.
func labelOf(name string, uid types.UID) string {
	current, ok := clusterUID(name)
	if !ok || (uid != "" && current != "" && current != uid) {
		return UnknownCluster
	}
	return name
}

// withClusterLabel runs record with the cluster label for name (labelOf),
// holding off the deletion of its series until record returns.
func withClusterLabel(name string, uid types.UID, record func(label string)) {
	clusterLabels.mu.RLock()
	defer clusterLabels.mu.RUnlock()
	record(labelOf(name, uid))
}

// RecordIfCluster runs record, which writes series under the cluster label
// name, only if a Cluster of that name exists, and says whether it did. The
// Cluster's series are not deleted while record runs.
func RecordIfCluster(name string, record func()) bool {
	clusterLabels.mu.RLock()
	defer clusterLabels.mu.RUnlock()
	if _, ok := clusterUID(name); !ok {
		return false
	}
	record()
	return true
}

// ForgetClusterSeries runs forget, which deletes the series of a deleted
// Cluster, while no series is being written.
func ForgetClusterSeries(forget func()) {
	clusterLabels.mu.Lock()
	defer clusterLabels.mu.Unlock()
	forget()
}

// ForgetClusterMetrics deletes the proxy's series of a deleted Cluster.
func ForgetClusterMetrics(name string) {
	if name == UnknownCluster {
		return
	}
	ForgetClusterSeries(func() {
		series := map[string]string{"cluster": name}
		requestsTotal.DeletePartialMatch(series)
		requestDuration.DeletePartialMatch(series)
		upstreamErrorsTotal.DeletePartialMatch(series)
		openStreams.DeletePartialMatch(series)
	})
}

// upstreamError counts a failure between switchboard and a member.
func upstreamError(name, reason string) {
	withClusterLabel(name, "", func(label string) {
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
// request for a name that no Cluster has counts as UnknownCluster.
func observeRejected(ctx context.Context, name string, err error) {
	code := http.StatusInternalServerError
	if status, ok := err.(apierrors.APIStatus); ok {
		code = int(status.Status().Code)
		if details := status.Status().Details; code == http.StatusNotFound && details != nil &&
			details.Group == cluster.GroupName && details.Kind == "clusters" {
			// The name was no Cluster's when the request came, whether
			// or not one has it by now.
			name = UnknownCluster
		}
	}
	verb := verbOf(ctx, nil)
	withClusterLabel(name, "", func(label string) {
		requestsTotal.WithLabelValues(label, verb, strconv.Itoa(code)).Inc()
	})
}

// withMetrics counts a proxied request and times it, or counts it as an
// open stream while it lasts. It records under the Cluster's name only
// while the Cluster it started with exists: a request that outlives its
// Cluster records as UnknownCluster, and a stream's open_streams series,
// deleted with the Cluster, is not brought back to count it out.
//
// responded holds the code of an error the handler reported through the
// rest.Responder, which writes to the caller's writer directly, past the
// recorder.
func withMetrics(name string, handler http.Handler, responded *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		info, _ := request.RequestInfoFrom(req.Context())
		long := IsLongRunning(req, info)
		clusterLabels.mu.RLock()
		uid, found := clusterUID(name)
		label := UnknownCluster
		if found {
			label = name
		}
		if long {
			openStreams.WithLabelValues(label).Inc()
		}
		clusterLabels.mu.RUnlock()
		if long {
			// Deferred: the handler panics with http.ErrAbortHandler when a
			// stream breaks off.
			defer withClusterLabel(label, uid, func(l string) {
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
		withClusterLabel(label, uid, func(l string) {
			requestsTotal.WithLabelValues(l, verb, strconv.Itoa(code)).Inc()
			if !long {
				requestDuration.WithLabelValues(l).Observe(time.Since(start).Seconds())
			}
		})
	})
}

// codeRecorder remembers the status code written, keeping the writer's
// Flusher and Hijacker (through responsewriter.WrapForHTTP1Or2).
type codeRecorder struct {
	http.ResponseWriter
	status int
	// hijacked is the code an upgrade answered with, read from the
	// hijacked connection: 101, or the member's refusal.
	hijacked atomic.Int32
}

// Hijack hands out the connection, reading the status line written to it.
func (r *codeRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &codeSniffer{Conn: conn, recorder: r}, rw, nil
}

// codeSniffer reads the code of the first status line written to a
// hijacked connection.
type codeSniffer struct {
	net.Conn
	recorder *codeRecorder
	once     sync.Once
}

func (c *codeSniffer) Write(p []byte) (int, error) {
	c.once.Do(func() {
		// "HTTP/1.1 101 Switching Protocols"
		if fields := strings.Fields(strings.SplitN(string(p), "\n", 2)[0]); len(fields) >= 2 && strings.HasPrefix(fields[0], "HTTP/") {
			if code, err := strconv.Atoi(fields[1]); err == nil {
				c.recorder.hijacked.Store(int32(code))
			}
		}
	})
	return c.Conn.Write(p)
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
	if c := r.hijacked.Load(); c != 0 {
		return int(c)
	}
	if r.status == 0 {
		// An upgrade hijacks the connection and writes the member's 101 itself.
		return http.StatusSwitchingProtocols
	}
	return r.status
}
