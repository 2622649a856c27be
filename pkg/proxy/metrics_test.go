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

// The metrics are global: every test here uses its own cluster names, so
// that counts from other tests cannot mix in.

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/component-base/metrics/testutil"

	"github.com/switchboard-io/switchboard/pkg/clusterlabel"
	listers "github.com/switchboard-io/switchboard/pkg/generated/listers/cluster/v1alpha1"
)

// metricsSince reads the proxy's metrics of one cluster as they rose since
// it was made, from the default registry as a scrape sees them, so that
// repeated runs (-count) and other tests do not mix in.
type metricsSince struct {
	t       *testing.T
	cluster string
	base    map[string]float64
}

func metricsFrom(t *testing.T, cluster string) *metricsSince {
	t.Helper()
	RegisterMetrics()
	return &metricsSince{t: t, cluster: cluster, base: gatherCluster(t, cluster)}
}

// gatherCluster reads every switchboard_proxy_* series of cluster, keyed
// name{label=value,...} without the cluster label: counters and gauges by
// value, histograms by sample count.
func gatherCluster(t *testing.T, cluster string) map[string]float64 {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range families {
		if !strings.HasPrefix(mf.GetName(), "switchboard_proxy_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			mine := false
			for _, l := range m.GetLabel() {
				if l.GetName() == "cluster" {
					mine = l.GetValue() == cluster
					continue
				}
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if !mine {
				continue
			}
			sort.Strings(labels)
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func (m *metricsSince) delta(key string) float64 {
	m.t.Helper()
	return gatherCluster(m.t, m.cluster)[key] - m.base[key]
}

// requests is how much switchboard_proxy_requests_total{verb,code} rose.
func (m *metricsSince) requests(verb, code string) float64 {
	m.t.Helper()
	return m.delta("switchboard_proxy_requests_total{code=" + code + ",verb=" + verb + "}")
}

// upstreamErrors is how much switchboard_proxy_upstream_errors_total{reason} rose.
func (m *metricsSince) upstreamErrors(reason string) float64 {
	m.t.Helper()
	return m.delta("switchboard_proxy_upstream_errors_total{reason=" + reason + "}")
}

// timed is how many requests switchboard_proxy_request_duration_seconds observed.
func (m *metricsSince) timed() float64 {
	m.t.Helper()
	return m.delta("switchboard_proxy_request_duration_seconds{}")
}

// openStreams is switchboard_proxy_open_streams now, read from the gauge itself.
func (m *metricsSince) openStreams() float64 {
	m.t.Helper()
	v, err := testutil.GetGaugeMetricValue(openStreams.WithLabelValues(m.cluster))
	if err != nil {
		m.t.Fatalf("reading open_streams: %v", err)
	}
	return v
}

// newInfoFrontend serves clusters/<cluster>/proxy/... through f's Proxier
// as alice, with the hub RequestInfo in the context as the filters set it.
func (f *fixture) newInfoFrontend(t *testing.T, cluster string) *httptest.Server {
	t.Helper()
	prefix := proxyPath(cluster, "")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		info, err := requestInfoFactory.NewRequestInfo(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req = req.WithContext(request.WithRequestInfo(request.WithUser(req.Context(), alice), info))
		handler, err := f.connect(req.Context(), cluster, strings.TrimPrefix(req.URL.Path, prefix), &recordingResponder{w: w})
		if err != nil {
			writeStatus(w, err)
			return
		}
		handler.ServeHTTP(w, req)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(srv.Close)
	return srv
}

func TestRequestsTotalByVerbAndCode(t *testing.T) {
	const name = "metrics-codes"
	mem := newMember(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost:
			answerWith(http.StatusCreated, nil, "{}")(w, r)
		case strings.HasSuffix(r.URL.Path, "/missing"):
			answerWith(http.StatusNotFound, http.Header{"Content-Type": {"application/json"}}, `{"kind":"Status","code":404}`)(w, r)
		default:
			answerDefault(w, r)
		}
	})
	f := newFixture(t)
	f.addMember(t, name, mem, "")
	metrics := metricsFrom(t, name)

	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/api/v1/namespaces/dev/pods/web-0", http.StatusOK},
		{http.MethodGet, "/api/v1/namespaces/dev/pods/missing", http.StatusNotFound},
		{http.MethodGet, "/api/v1/namespaces/dev/pods/web-0", http.StatusOK},
		{http.MethodPost, "/api/v1/namespaces/dev/configmaps", http.StatusCreated},
	} {
		var body io.Reader
		if tc.method == http.MethodPost {
			body = strings.NewReader("{}")
		}
		req := withInfo(t, newProxyRequest(tc.method, name, tc.path, "", body, alice))
		rec, responder := f.serve(t, name, tc.path, req)
		responder.noErrors(t)
		if rec.Code != tc.code {
			t.Fatalf("%s %s = %d %q, want %d", tc.method, tc.path, rec.Code, rec.Body.String(), tc.code)
		}
	}

	for _, want := range []struct {
		verb, code string
		n          float64
	}{
		{"get", "200", 2},
		{"get", "404", 1},
		{"create", "201", 1},
		{"get", "101", 0},
		{"get", "503", 0},
	} {
		if got := metrics.requests(want.verb, want.code); got != want.n {
			t.Errorf("requests_total{cluster=%s,verb=%s,code=%s} rose by %v, want %v", name, want.verb, want.code, got, want.n)
		}
	}
	if got := metrics.timed(); got != 4 {
		t.Errorf("request_duration_seconds count rose by %v, want 4", got)
	}
	if got := metrics.openStreams(); got != 0 {
		t.Errorf("open_streams = %v, want 0", got)
	}
	// The same through the vector itself.
	if v, err := testutil.GetCounterMetricValue(requestsTotal.WithLabelValues(name, "get", "404")); err != nil || v < 1 {
		t.Errorf("requestsTotal{%s,get,404} = %v, %v", name, v, err)
	}
}

func TestUpstreamErrorsDial(t *testing.T) {
	const name = "metrics-dial"
	f := newFixture(t)
	endpoint := unreachableEndpoint(t, false)
	f.putSecret(t, newSecret(secretName(name), map[string][]byte{"token": []byte(testToken)}))
	cl := newCluster(name, endpoint)
	cl.Spec.InsecureSkipTLSVerify = true
	f.putCluster(t, cl)
	metrics := metricsFrom(t, name)

	req := withInfo(t, newProxyRequest(http.MethodGet, name, "/api/v1/pods", "", nil, alice))
	var rec *httptest.ResponseRecorder
	within(t, "the proxied request", func() { rec, _ = f.serve(t, name, "/api/v1/pods", req) })
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("code = %d %q, want 503", rec.Code, rec.Body.String())
	}
	// A closed port: refused, as the Cluster status and join name it too.
	if got := metrics.upstreamErrors("refused"); got != 1 {
		t.Errorf("upstream_errors_total{reason=refused} rose by %v, want 1", got)
	}
	if !strings.Contains(rec.Body.String(), "the connection was refused: nothing listens there") {
		t.Errorf("the 503 does not say the connection was refused: %s", rec.Body.String())
	}
	for _, reason := range []string{"dns", "tls", "timeout", "other", "reset", "redirect", "unauthorized", "credentials", "down"} {
		if got := metrics.upstreamErrors(reason); got != 0 {
			t.Errorf("upstream_errors_total{reason=%s} rose by %v, want 0", reason, got)
		}
	}
	// The caller got a 503: so must the metric say, not 101.
	if got := metrics.requests("get", "503"); got != 1 {
		t.Errorf("requests_total{verb=get,code=503} rose by %v, want 1 (code=101 rose by %v)", got, metrics.requests("get", "101"))
	}
}

func TestUpstreamErrorsRedirect(t *testing.T) {
	const name = "metrics-redirect"
	mem := newMember(t, answerWith(http.StatusFound, http.Header{"Location": {"https://elsewhere.example.com/"}}, "moved"))
	f := newFixture(t)
	f.addMember(t, name, mem, "")
	metrics := metricsFrom(t, name)

	req := withInfo(t, newProxyRequest(http.MethodGet, name, "/api/v1/pods", "", nil, alice))
	rec, _ := f.serve(t, name, "/api/v1/pods", req)
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("code = %d %q, want 502", rec.Code, rec.Body.String())
	}
	if got := metrics.upstreamErrors("redirect"); got != 1 {
		t.Errorf("upstream_errors_total{reason=redirect} rose by %v, want 1", got)
	}
	if got := metrics.requests("get", "502"); got != 1 {
		t.Errorf("requests_total{verb=get,code=502} rose by %v, want 1", got)
	}
	if got := metrics.upstreamErrors("refused"); got != 0 {
		t.Errorf("upstream_errors_total{reason=refused} rose by %v, want 0", got)
	}
}

func TestUpstreamErrorsCredentials(t *testing.T) {
	const name = "metrics-credentials"
	mem := newMember(t, nil)
	f := newFixture(t)
	f.putSecret(t, newSecret(secretName(name), map[string][]byte{"token": []byte(testToken), "ca.crt": []byte("garbage")}))
	f.putCluster(t, newCluster(name, mem.srv.URL))
	metrics := metricsFrom(t, name)

	req := withInfo(t, newProxyRequest(http.MethodGet, name, "/api/v1/pods", "", nil, alice))
	if _, err := f.connect(req.Context(), name, "/api/v1/pods", &recordingResponder{}); err == nil {
		t.Fatal("Connect with a broken Secret passed")
	}
	if got := metrics.upstreamErrors("credentials"); got != 1 {
		t.Errorf("upstream_errors_total{reason=credentials} rose by %v, want 1", got)
	}
	if got := metrics.requests("get", "503"); got != 1 {
		t.Errorf("requests_total{verb=get,code=503} rose by %v, want 1", got)
	}
}

func TestOpenStreamsOfAWatch(t *testing.T) {
	const name = "metrics-watch"
	const first = `{"type":"ADDED"}` + "\n"
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	mem := newMember(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, first)
		_ = http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(2 * waitTimeout):
		}
	})
	f := newFixture(t)
	f.addMember(t, name, mem, "")
	fe := f.newInfoFrontend(t, name)
	metrics := metricsFrom(t, name)

	if got := metrics.openStreams(); got != 0 {
		t.Fatalf("open_streams before the watch = %v", got)
	}
	resp, err := (&http.Client{Timeout: 3 * waitTimeout}).Get(fe.URL + proxyPath(name, "/api/v1/pods") + "?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	reader := bufio.NewReader(resp.Body)
	line, err := reader.ReadString('\n')
	if err != nil || line != first {
		t.Fatalf("first line = %q, %v", line, err)
	}
	// The stream is open: the member holds it.
	if got := metrics.openStreams(); got != 1 {
		t.Errorf("open_streams while the watch runs = %v, want 1", got)
	}

	releaseOnce.Do(func() { close(release) })
	if _, err := io.ReadAll(reader); err != nil {
		t.Fatal(err)
	}
	eventually(t, "open_streams to drop to 0", func() bool { return metrics.openStreams() == 0 })
	eventually(t, "the watch to be counted", func() bool { return metrics.requests("get", "200") == 1 })
	if got := metrics.timed(); got != 0 {
		t.Errorf("request_duration_seconds count rose by %v; streams are not timed", got)
	}
}

func TestOpenStreamsOfAnUpgrade(t *testing.T) {
	const name = "metrics-exec"
	mem := newMember(t, nil)
	f := newFixture(t)
	f.addMember(t, name, mem, "")
	fe := &frontend{srv: f.newInfoFrontend(t, name)}
	metrics := metricsFrom(t, name)

	resp, conn := fe.upgrade(t, proxyPath(name, execPath)+"?command=ls&stdout=true", nil)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("answer = %d %q, want 101", resp.StatusCode, readBody(t, resp))
	}
	conn.expectEcho(t)
	if got := metrics.openStreams(); got != 1 {
		t.Errorf("open_streams during exec = %v, want 1", got)
	}
	_ = conn.conn.Close()
	eventually(t, "open_streams to drop to 0", func() bool { return metrics.openStreams() == 0 })
	eventually(t, "the upgrade to be counted", func() bool { return metrics.requests("get", "101") == 1 })
	if got := metrics.timed(); got != 0 {
		t.Errorf("request_duration_seconds count rose by %v; streams are not timed", got)
	}
}

// A member that refuses an upgrade answers with an error, which reaches the
// caller unchanged; it is no upgraded stream and must not count as 101.
func TestRefusedUpgradeIsCountedWithTheMemberCode(t *testing.T) {
	const name = "metrics-exec-refused"
	mem := newMember(t, answerWith(http.StatusForbidden, http.Header{"Content-Type": {"application/json"}},
		`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`))
	f := newFixture(t)
	f.addMember(t, name, mem, "")
	fe := &frontend{srv: f.newInfoFrontend(t, name)}
	metrics := metricsFrom(t, name)

	resp, _ := fe.upgrade(t, proxyPath(name, execPath)+"?command=ls", nil)
	readBody(t, resp)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("answer = %d, want the member's 403", resp.StatusCode)
	}
	eventually(t, "the refused upgrade to be counted", func() bool {
		return metrics.requests("get", "403")+metrics.requests("get", "101") == 1
	})
	if got := metrics.requests("get", "101"); got != 0 {
		t.Errorf("requests_total{code=101} rose by %v for an upgrade the member refused with 403", got)
	}
	if got := metrics.requests("get", "403"); got != 1 {
		t.Errorf("requests_total{code=403} rose by %v, want 1", got)
	}
	eventually(t, "open_streams to drop to 0", func() bool { return metrics.openStreams() == 0 })
}

// labelClustersOf makes f's Clusters the names the metrics' cluster label
// may hold, as the server does with its informer's lister.
func labelClustersOf(t *testing.T, f *fixture) {
	t.Helper()
	RegisterMetrics()
	clusterlabel.Use(listers.NewClusterLister(f.clusters))
	t.Cleanup(func() { clusterlabel.Use(nil) })
}

// seriesWithCluster returns every series of switchboard's metrics whose
// cluster label is cluster, or starts with it when prefix is set, as
// name{cluster=...}.
func seriesWithCluster(t *testing.T, cluster string, prefix bool) []string {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	var out []string
	for _, mf := range families {
		if !strings.HasPrefix(mf.GetName(), "switchboard_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cluster" && (l.GetValue() == cluster || prefix && strings.HasPrefix(l.GetValue(), cluster)) {
					out = append(out, mf.GetName()+"{cluster="+l.GetValue()+"}")
				}
			}
		}
	}
	return out
}

// Requests for names that no Cluster has, however many, add no label value
// but clusterlabel.Unknown.
func TestUnknownClustersShareOneLabelValue(t *testing.T) {
	const prefix = "metrics-ghost-"
	f := newFixture(t)
	labelClustersOf(t, f)
	unknown := metricsFrom(t, clusterlabel.Unknown)

	rejected := func(name, path string, want int32) {
		t.Helper()
		req := withInfo(t, newProxyRequest(http.MethodGet, name, path, "", nil, alice))
		handler, err := f.connect(req.Context(), name, path, &recordingResponder{})
		if handler != nil || err == nil {
			t.Fatalf("Connect(%q) = a handler, want an error", name)
		}
		if status := statusOf(t, err); status.Code != want {
			t.Fatalf("Connect(%q, %q) = %d %s, want %d", name, path, status.Code, status.Message, want)
		}
	}
	for i := range 50 {
		rejected(fmt.Sprintf("%s%d", prefix, i), "/api/v1/pods", http.StatusNotFound)
	}
	// Refused before the name is looked up: a dot segment, and the caches
	// not synced yet.
	rejected(prefix+"bad-path", "/api/v1/../secrets", http.StatusBadRequest)
	f.synced.Store(false)
	rejected(prefix+"unsynced", "/api/v1/pods", http.StatusServiceUnavailable)

	if got := seriesWithCluster(t, prefix, true); len(got) != 0 {
		t.Errorf("requests for names no Cluster has made series of their own: %v", got)
	}
	for _, want := range []struct {
		code string
		n    float64
	}{{"404", 50}, {"400", 1}, {"503", 1}} {
		if got := unknown.requests("get", want.code); got != want.n {
			t.Errorf("requests_total{cluster=%s,verb=get,code=%s} rose by %v, want %v", clusterlabel.Unknown, want.code, got, want.n)
		}
	}
}

// A deleted Cluster leaves no series, not even from requests that were in
// flight when it went and end afterwards.
func TestDeletedClusterLeavesNoSeries(t *testing.T) {
	const name = "metrics-deleted"
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	arrived := make(chan string, 2)
	wait := func(r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
	mem := newMember(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Query().Get("watch") == "true":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"type":"ADDED"}`+"\n")
			_ = http.NewResponseController(w).Flush()
			arrived <- "watch"
			wait(r)
		case strings.HasSuffix(r.URL.Path, "/redirect"):
			answerWith(http.StatusFound, http.Header{"Location": {"https://elsewhere.example.com/"}}, "moved")(w, r)
		case strings.HasSuffix(r.URL.Path, "/slow-redirect"):
			arrived <- "slow"
			wait(r)
			answerWith(http.StatusFound, http.Header{"Location": {"https://elsewhere.example.com/"}}, "moved")(w, r)
		default:
			answerDefault(w, r)
		}
	})
	f := newFixture(t)
	f.addMember(t, name, mem, "")
	labelClustersOf(t, f)
	fe := &frontend{srv: f.newInfoFrontend(t, name)}
	unknown := metricsFrom(t, clusterlabel.Unknown)

	// Every proxy metric gets a series of the Cluster: a request, an
	// upstream error, and a watch that stays open.
	if resp, body := fe.do(t, http.MethodGet, proxyPath(name, "/api/v1/pods"), nil, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET = %d %q", resp.StatusCode, body)
	}
	if resp, body := fe.do(t, http.MethodGet, proxyPath(name, "/redirect"), nil, ""); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("GET of a redirect = %d %q", resp.StatusCode, body)
	}
	client := &http.Client{Timeout: 3 * waitTimeout}
	watch, err := client.Get(fe.srv.URL + proxyPath(name, "/api/v1/pods") + "?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Body.Close()
	slow := make(chan *http.Response, 1)
	go func() {
		resp, err := client.Get(fe.srv.URL + proxyPath(name, "/slow-redirect"))
		if err != nil {
			t.Errorf("GET of the slow redirect: %v", err)
			close(slow)
			return
		}
		_, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		slow <- resp
	}()
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(waitTimeout):
			t.Fatal("the watch and the slow request did not both reach the member")
		}
	}
	before := strings.Join(seriesWithCluster(t, name, false), " ")
	for _, metric := range []string{"requests_total", "request_duration_seconds", "upstream_errors_total", "open_streams"} {
		if !strings.Contains(before, "switchboard_proxy_"+metric+"{") {
			t.Fatalf("no switchboard_proxy_%s series of %s before the deletion: %s", metric, name, before)
		}
	}

	// What the server's informer does: the lister loses the Cluster, then
	// the delete event comes.
	if err := f.clusters.Delete(f.cluster(t, name)); err != nil {
		t.Fatal(err)
	}
	ForgetClusterMetrics(name)
	if got := seriesWithCluster(t, name, false); len(got) != 0 {
		t.Errorf("series of the deleted Cluster: %v", got)
	}

	// The requests in flight end; they must not bring the series back.
	releaseOnce.Do(func() { close(release) })
	if _, err := io.ReadAll(watch.Body); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-slow:
		if resp == nil || resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("the slow redirect = %v, want 502", resp)
		}
	case <-time.After(2 * waitTimeout):
		t.Fatal("the slow request did not end")
	}
	// Counted once they end, under one name or the other.
	eventually(t, "both requests to be counted", func() bool {
		counted := unknown.requests("get", "200") + unknown.requests("get", "502")
		mine := gatherCluster(t, name)
		return counted+mine["switchboard_proxy_requests_total{code=200,verb=get}"]+mine["switchboard_proxy_requests_total{code=502,verb=get}"] == 2
	})
	if got := seriesWithCluster(t, name, false); len(got) != 0 {
		t.Errorf("requests that outlived their Cluster brought its series back: %v", got)
	}
	if got := unknown.requests("get", "200"); got != 1 {
		t.Errorf("requests_total{cluster=%s,verb=get,code=200} rose by %v, want 1 (the watch)", clusterlabel.Unknown, got)
	}
	if got := unknown.requests("get", "502"); got != 1 {
		t.Errorf("requests_total{cluster=%s,verb=get,code=502} rose by %v, want 1", clusterlabel.Unknown, got)
	}
	if got := unknown.upstreamErrors("redirect"); got != 1 {
		t.Errorf("upstream_errors_total{cluster=%s,reason=redirect} rose by %v, want 1", clusterlabel.Unknown, got)
	}
	if got := unknown.timed(); got != 1 {
		t.Errorf("request_duration_seconds{cluster=%s} count rose by %v, want 1", clusterlabel.Unknown, got)
	}
	if got := unknown.delta("switchboard_proxy_open_streams{}"); got != 0 {
		t.Errorf("open_streams{cluster=%s} moved by %v, want 0", clusterlabel.Unknown, got)
	}
}

// A stream that outlives its Cluster does not count out a stream of a new
// Cluster of the same name.
func TestStreamOfADeletedClusterDoesNotCountOutTheNext(t *testing.T) {
	const name = "metrics-recreated"
	const first = `{"type":"ADDED"}` + "\n"
	release := map[string]chan struct{}{"old": make(chan struct{}), "new": make(chan struct{})}
	mem := newMember(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, first)
		_ = http.NewResponseController(w).Flush()
		select {
		case <-release[r.URL.Query().Get("labelSelector")]:
		case <-r.Context().Done():
		}
	})
	f := newFixture(t)
	f.addMember(t, name, mem, "")
	labelClustersOf(t, f)
	fe := f.newInfoFrontend(t, name)
	metrics := metricsFrom(t, name)
	client := &http.Client{Timeout: 3 * waitTimeout}
	open := func(which string) *http.Response {
		t.Helper()
		resp, err := client.Get(fe.URL + proxyPath(name, "/api/v1/pods") + "?watch=true&labelSelector=" + which)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || line != first {
			t.Fatalf("first line of the %s watch = %q, %v", which, line, err)
		}
		return resp
	}
	end := func(which string, resp *http.Response) {
		t.Helper()
		close(release[which])
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
	}

	unknown := metricsFrom(t, clusterlabel.Unknown)

	old := open("old")
	if got := metrics.openStreams(); got != 1 {
		t.Fatalf("open_streams with the first watch open = %v, want 1", got)
	}
	if err := f.clusters.Delete(f.cluster(t, name)); err != nil {
		t.Fatal(err)
	}
	ForgetClusterMetrics(name)
	// A new Cluster of the same name: another object, with another UID.
	recreated := newCluster(name, mem.srv.URL)
	recreated.UID = "uid-" + name + "-again"
	f.putCluster(t, recreated)
	newer := open("new")
	if got := metrics.openStreams(); got != 1 {
		t.Fatalf("open_streams with the new Cluster's watch open = %v, want 1", got)
	}

	end("old", old)
	// Counted once it ends, under one name or the other; the new watch is
	// still open.
	eventually(t, "the first watch to be counted", func() bool {
		return unknown.requests("get", "200")+gatherCluster(t, name)["switchboard_proxy_requests_total{code=200,verb=get}"] == 1
	})
	if got := unknown.requests("get", "200"); got != 1 {
		t.Errorf("requests_total{cluster=%s,verb=get,code=200} rose by %v, want 1: the watch outlived its Cluster", clusterlabel.Unknown, got)
	}
	if got := metrics.openStreams(); got != 1 {
		t.Errorf("open_streams after the deleted Cluster's watch ended = %v, want 1: the new Cluster's watch is still open", got)
	}
	end("new", newer)
	eventually(t, "open_streams to drop to 0", func() bool { return metrics.openStreams() == 0 })
}
