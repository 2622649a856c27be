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
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/switchboard-io/switchboard/pkg/cmd/server"
	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
)

// TestClustersSurviveRestartEmbedded stops the server and starts a new one on
// the same data directory.
func TestClustersSurviveRestartEmbedded(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	s := startServer(t, p, dataDirArg(dir))
	ctx := ctxFor(t)
	created, err := s.clientset().ClusterV1alpha1().Clusters().Create(ctx, newCluster("member1", "https://10.0.0.12:6443"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("clean stop returned %v", err)
	}

	s = startServer(t, p, dataDirArg(dir))
	got, err := s.clientset().ClusterV1alpha1().Clusters().Get(ctx, "member1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.UID != created.UID || got.Spec.Endpoint != created.Spec.Endpoint {
		t.Fatalf("after restart: %+v, want %+v", got, created)
	}
}

// TestSecondServerOnSameDataDirFails: two replicas cannot share an embedded etcd.
func TestSecondServerOnSameDataDirFails(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	startServer(t, p, dataDirArg(dir))

	second := launch(t, p, dataDirArg(dir))
	select {
	case err := <-second.done:
		if err == nil || !strings.Contains(err.Error(), "in use by another switchboard-apiserver") {
			t.Fatalf("second server: err = %v", err)
		}
		close(second.done)
	case <-time.After(time.Minute):
		t.Fatal("second server on the same data directory did not fail")
	}
}

// externalEtcd is an etcd the test controls, on a fixed loopback port so it
// can come back at the same address.
type externalEtcd struct {
	t    *testing.T
	dir  string
	url  url.URL
	etcd *embed.Etcd
}

func newExternalEtcd(t *testing.T) *externalEtcd {
	e := &externalEtcd{
		t:   t,
		dir: filepath.Join(t.TempDir(), "etcd"),
		url: url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(freePort(t))},
	}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *externalEtcd) start() {
	e.t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "external"
	cfg.Dir = e.dir
	cfg.ListenClientUrls = []url.URL{e.url}
	cfg.AdvertiseClientUrls = []url.URL{e.url}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(freePort(e.t))}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		e.t.Fatalf("starting external etcd: %v", err)
	}
	select {
	case <-etcd.Server.ReadyNotify():
	case <-time.After(time.Minute):
		etcd.Close()
		e.t.Fatal("external etcd not ready within a minute")
	}
	e.etcd = etcd
}

func (e *externalEtcd) stop() {
	if e.etcd != nil {
		e.etcd.Close()
		e.etcd = nil
	}
}

// TestExternalEtcdOutage runs against an external etcd, takes it away and
// brings it back: /readyz fails and requests get 5xx Status errors while it
// is gone, the server stays up, and it recovers on its own.
func TestExternalEtcdOutage(t *testing.T) {
	p := newPKI(t)
	etcd := newExternalEtcd(t)
	serverArgs := []string{"--etcd-servers=" + etcd.url.String(), "--etcd-prefix=/switchboard-test"}
	s := startServer(t, p, serverArgs...)
	clusters := s.clientset().ClusterV1alpha1().Clusters()
	ctx := ctxFor(t)
	created, err := clusters.Create(ctx, newCluster("member1", "https://10.0.0.12:6443"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	etcd.stop()

	admin := s.httpClient(s.adminConfig())
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		code, _ := get(ctx, admin, s.host+"/readyz")
		return code == http.StatusInternalServerError, nil
	}); err != nil {
		t.Fatalf("/readyz kept passing without etcd: %v", err)
	}
	code, body := get(ctx, admin, s.host+"/readyz?verbose")
	if !strings.Contains(body, "[-]etcd") {
		t.Errorf("/readyz does not name etcd as failing: %d %s", code, body)
	}
	if code, _ := get(ctx, admin, s.host+"/livez"); code != http.StatusOK {
		t.Errorf("/livez = %d while etcd is away; the process must not be restarted for that", code)
	}

	// Reads and writes fail at once with a 503 Status and Retry-After, not a
	// hang. (client-go honours Retry-After and retries, so the raw requests
	// show what the server answers.)
	base := s.host + "/apis/cluster.switchboard.io/v1alpha1/clusters"
	requests := []struct{ method, url, body string }{
		{http.MethodGet, base + "/member1", ""},
		{http.MethodGet, base, ""},
		{http.MethodPost, base, `{"apiVersion":"cluster.switchboard.io/v1alpha1","kind":"Cluster","metadata":{"name":"member2"},"spec":{"endpoint":"https://10.0.0.13:6443","credentialsSecretRef":{"name":"c"}}}`},
		{http.MethodPut, base + "/member1/status", `{"apiVersion":"cluster.switchboard.io/v1alpha1","kind":"Cluster","metadata":{"name":"member1"}}`},
		{http.MethodDelete, base + "/member1", ""},
	}
	for _, r := range requests {
		shortCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		req, _ := http.NewRequestWithContext(shortCtx, r.method, r.url, strings.NewReader(r.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := admin.Do(req)
		if err != nil {
			cancel()
			t.Errorf("%s %s without etcd: %v", r.method, r.url, err)
			continue
		}
		var status metav1.Status
		decodeErr := json.NewDecoder(resp.Body).Decode(&status)
		_ = resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusServiceUnavailable || decodeErr != nil || status.Kind != "Status" ||
			status.Reason != metav1.StatusReasonServiceUnavailable || !strings.Contains(status.Message, "etcd") {
			t.Errorf("%s %s without etcd: %d %+v (%v)", r.method, r.url, resp.StatusCode, status, decodeErr)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s without etcd: no Retry-After", r.method, r.url)
		}
	}
	if exited, err := s.exited(); exited {
		t.Fatalf("server exited while etcd was away: %v", err)
	}

	etcd.start()
	if err := s.waitReady(2 * time.Minute); err != nil {
		t.Fatalf("server did not recover when etcd came back: %v", err)
	}
	got, err := clusters.Get(ctx, "member1", metav1.GetOptions{})
	if err != nil || got.UID != created.UID {
		t.Fatalf("after recovery: %+v, %v", got, err)
	}

	// Nothing written while etcd was away, nothing lost.
	if _, err := clusters.Get(ctx, "member2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("member2 created while etcd was away: %v", err)
	}

	// And the objects survive a restart of the server on the external etcd.
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, p, serverArgs...)
	got, err = s.clientset().ClusterV1alpha1().Clusters().Get(ctx, "member1", metav1.GetOptions{})
	if err != nil || got.UID != created.UID {
		t.Fatalf("after server restart: %+v, %v", got, err)
	}
}

// TestAuthorization: without a hub, only system:masters is allowed; everyone
// else gets 403, and anonymous callers see only the health endpoints.
func TestAuthorization(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, dataDirArg(t.TempDir()))
	ctx := ctxFor(t)

	alice := clientset.NewForConfigOrDie(s.userConfig("alice", "developers"))
	_, err := alice.ClusterV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `User "alice" cannot list resource "clusters"`) {
		t.Fatalf("alice: err = %v, want Forbidden", err)
	}

	anonymous := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsTrusting(p)}}
	for path, want := range map[string]int{
		"/healthz": http.StatusOK,
		"/livez":   http.StatusOK,
		"/readyz":  http.StatusOK,
		"/apis/cluster.switchboard.io/v1alpha1/clusters": http.StatusForbidden,
		"/metrics": http.StatusForbidden,
	} {
		if code, body := get(ctx, anonymous, s.host+path); code != want {
			t.Errorf("anonymous GET %s = %d, want %d: %s", path, code, want, body)
		}
	}
}

// TestDiscoveryOpenAPIAndVersion checks what kubectl reads before it does
// anything: discovery, the OpenAPI v2 and v3 documents behind kubectl
// explain, and /version.
func TestDiscoveryOpenAPIAndVersion(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, dataDirArg(t.TempDir()))
	ctx := ctxFor(t)
	admin := s.httpClient(s.adminConfig())

	resources, err := s.clientset().Discovery().ServerResourcesForGroupVersion("cluster.switchboard.io/v1alpha1")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]metav1.APIResource{}
	for _, r := range resources.APIResources {
		found[r.Name] = r
	}
	if r, ok := found["clusters"]; !ok || r.Namespaced || r.Kind != "Cluster" || r.SingularName != "cluster" {
		t.Errorf("clusters in discovery: %+v", found["clusters"])
	}
	// "clusters" alone is ambiguous on a hub that also runs Cluster API or
	// Karmada; the short names and the category are not.
	if r := found["clusters"]; !reflect.DeepEqual(r.ShortNames, []string{"sbc", "sbcluster"}) || !reflect.DeepEqual(r.Categories, []string{"switchboard"}) {
		t.Errorf("clusters in discovery: short names %q, categories %q; want [sbc sbcluster] and [switchboard]", r.ShortNames, r.Categories)
	}
	if _, ok := found["clusters/status"]; !ok {
		t.Errorf("clusters/status missing from discovery: %v", found)
	}

	code, v3 := get(ctx, admin, s.host+"/openapi/v3/apis/cluster.switchboard.io/v1alpha1")
	if code != http.StatusOK {
		t.Fatalf("openapi v3: %d %s", code, v3)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Description string                     `json:"description"`
				Properties  map[string]json.RawMessage `json:"properties"`
				GVK         []map[string]string        `json:"x-kubernetes-group-version-kind"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal([]byte(v3), &doc); err != nil {
		t.Fatal(err)
	}
	cluster, ok := doc.Components.Schemas["io.switchboard.cluster.v1alpha1.Cluster"]
	if !ok || len(cluster.GVK) != 1 || cluster.GVK[0]["kind"] != "Cluster" {
		t.Fatalf("Cluster schema missing or without its kind: %+v", cluster)
	}
	spec := doc.Components.Schemas["io.switchboard.cluster.v1alpha1.ClusterSpec"]
	for _, field := range []string{"endpoint", "credentialsSecretRef", "insecureSkipTLSVerify", "tlsServerName", "proxyURL"} {
		if _, ok := spec.Properties[field]; !ok {
			t.Errorf("ClusterSpec schema lacks %s", field)
		}
	}
	if !bytes.Contains(spec.Properties["endpoint"], []byte("URL of the member's API server")) {
		t.Errorf("endpoint has no description: %s", spec.Properties["endpoint"])
	}

	code, v2 := get(ctx, admin, s.host+"/openapi/v2")
	if code != http.StatusOK || !strings.Contains(v2, `"io.switchboard.cluster.v1alpha1.Cluster"`) {
		t.Fatalf("openapi v2: %d, Cluster definition present: %v", code, strings.Contains(v2, "io.switchboard.cluster.v1alpha1.Cluster"))
	}

	code, version := get(ctx, admin, s.host+"/version")
	if code != http.StatusOK || !strings.Contains(version, `"gitVersion"`) || !strings.Contains(version, `"goVersion"`) {
		t.Fatalf("/version: %d %s", code, version)
	}
}

// TestCommandLine checks what the command does with flags alone.
func TestCommandLine(t *testing.T) {
	run := func(args ...string) (string, error) {
		cmd := server.NewCommand(context.Background())
		cmd.SetArgs(args)
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		err := cmd.Execute()
		return out.String(), err
	}

	out, err := run("--version")
	if err != nil || !strings.HasPrefix(out, "switchboard-apiserver v") {
		t.Errorf("--version: %q, %v", out, err)
	}
	out, err = run("--version=raw")
	if err != nil || !strings.Contains(out, `"gitVersion"`) {
		t.Errorf("--version=raw: %q, %v", out, err)
	}

	_, err = run("--data-dir", t.TempDir(), "extra-argument")
	if err == nil || !strings.Contains(err.Error(), "does not take any arguments") {
		t.Errorf("positional argument: err = %v", err)
	}

	// Every problem is reported at once.
	_, err = run("--data-dir=", "--etcd-cafile=/ca.crt", "--secure-port=70000")
	for _, want := range []string{"--data-dir must be set", "--etcd-cafile only applies with --etcd-servers", "--secure-port"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad flags: err = %v, want it to mention %q", err, want)
		}
	}

	// Leader election settings client-go's elector would refuse, with a
	// panic after the server started, are refused up front.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--leader-elect-retry-period=9s"}, "--leader-elect-renew-deadline must be more than 1.2 times --leader-elect-retry-period"},
		{[]string{"--leader-elect-lease-duration=5s"}, "--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration"},
		{[]string{"--leader-elect-retry-period=0s"}, "must be positive"},
		{[]string{"--leader-elect-resource-name="}, "--leader-elect-resource-name and --leader-elect-resource-namespace must not be empty"},
	} {
		_, err := run(append([]string{"--data-dir", t.TempDir()}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want it to mention %q", tc.args, err, tc.want)
		}
	}

	out, err = run("--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, section := range []string{"Etcd flags:", "Authentication flags:", "Authorization flags:", "Hub flags:", "Logs flags:", "--data-dir", "--etcd-servers", "--requestheader-client-ca-file", "--authorization-kubeconfig"} {
		if !strings.Contains(out, section) {
			t.Errorf("--help lacks %q", section)
		}
	}
}
