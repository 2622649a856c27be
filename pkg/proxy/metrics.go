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
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/endpoints/responsewriter"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Every metric here has a cluster label: one value per member cluster,
// which a hub counts in tens or hundreds, not more.
var (
	requestsTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      "switchboard_proxy",
		Name:           "requests_total",
		Help:           "Requests proxied to member clusters, by cluster, verb and HTTP code (101 for upgraded streams). The cluster label has one value per member cluster.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "verb", "code"})
	requestDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Subsystem: "switchboard_proxy",
		Name:      "request_duration_seconds",
		Help: "How long proxied requests that are not streams take, by cluster, from switchboard receiving them to the end of the answer. " +
			"The cluster label has one value per member cluster.",
		// Fine below a millisecond, where switchboard's own overhead lies.
		Buckets:        []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	upstreamErrorsTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem: "switchboard_proxy",
		Name:      "upstream_errors_total",
		Help: "Failures between switchboard and member clusters, by cluster and reason (dial, tls, timeout, reset, redirect, unauthorized, credentials, down). " +
			"The cluster label has one value per member cluster.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "reason"})
	openStreams = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Subsystem:      "switchboard_proxy",
		Name:           "open_streams",
		Help:           "Long-running proxied requests (watches, logs -f, exec, attach, port-forward) open now, by cluster. The cluster label has one value per member cluster.",
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

// upstreamError counts a failure between switchboard and a member.
func upstreamError(cluster, reason string) {
	upstreamErrorsTotal.WithLabelValues(cluster, reason).Inc()
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

// observeRejected counts a request refused before reaching the member.
func observeRejected(ctx context.Context, cluster string, err error) {
	code := http.StatusInternalServerError
	if status, ok := err.(apierrors.APIStatus); ok {
		code = int(status.Status().Code)
	}
	requestsTotal.WithLabelValues(cluster, verbOf(ctx, nil), strconv.Itoa(code)).Inc()
}

// withMetrics counts a proxied request and times it, or counts it as an
// open stream while it lasts.
//
// responded holds the code of an error the handler reported through the
// rest.Responder, which writes to the caller's writer directly, past the
// recorder.
func withMetrics(cluster string, handler http.Handler, responded *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		info, _ := request.RequestInfoFrom(req.Context())
		long := IsLongRunning(req, info)
		if long {
			openStreams.WithLabelValues(cluster).Inc()
			defer openStreams.WithLabelValues(cluster).Dec()
		}
		rec := &codeRecorder{ResponseWriter: w}
		handler.ServeHTTP(responsewriter.WrapForHTTP1Or2(rec), req)
		code := rec.code()
		if c := responded.Load(); c != 0 {
			code = int(c)
		}
		requestsTotal.WithLabelValues(cluster, verbOf(req.Context(), req), strconv.Itoa(code)).Inc()
		if !long {
			requestDuration.WithLabelValues(cluster).Observe(time.Since(start).Seconds())
		}
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
