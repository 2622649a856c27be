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

package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

const clustersPath = "/apis/cluster.switchboard.io/v1alpha1/clusters"

// fakeHub is a hub's API as the plugin sees it, over HTTP: Clusters (as a
// list and as kubectl's Table, and their deletion), the proxy to each
// member's /version, and for install and unjoin, discovery, server-side
// apply and deletion of arbitrary objects.
type fakeHub struct {
	t      *testing.T
	server *httptest.Server

	mu       sync.Mutex
	clusters []v1alpha1.Cluster
	// down lists the clusters whose proxied /version fails with a 503.
	down map[string]bool
	// forbidClusterGet makes GET clusters/NAME answer 403.
	forbidClusterGet bool
	// resources is the discovery for install: group/version -> resources.
	resources map[string][]metav1.APIResource
	// objects are the objects install may read, by request path.
	objects map[string]map[string]any
	// requests are "METHOD path?query" of every request, in order.
	requests []string
	// patches are the bodies of every PATCH, by path.
	patches map[string][]byte
	// invalid are the paths whose PATCH fails validation.
	invalid map[string]bool
}

func newFakeHub(t *testing.T) *fakeHub {
	h := &fakeHub{t: t, down: map[string]bool{}, resources: map[string][]metav1.APIResource{}, objects: map[string]map[string]any{}, patches: map[string][]byte{}, invalid: map[string]bool{}}
	h.server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.server.Close)
	return h
}

// kubeconfig writes a kubeconfig for the hub, context "hub".
func (h *fakeHub) kubeconfig() string {
	config := clientcmdapi.NewConfig()
	config.Clusters["hub"] = &clientcmdapi.Cluster{Server: h.server.URL}
	config.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: "admin-token"}
	config.Contexts["hub"] = &clientcmdapi.Context{Cluster: "hub", AuthInfo: "admin"}
	config.CurrentContext = "hub"
	path := filepath.Join(h.t.TempDir(), "hub.kubeconfig")
	if err := clientcmd.WriteToFile(*config, path); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// flags select the hub.
func (h *fakeHub) flags() []string {
	return []string{"--kubeconfig", h.kubeconfig(), "--cache-dir", h.t.TempDir()}
}

// hubFlags are kubectl's flags set to select the hub, as options'
// Complete takes them.
func (h *fakeHub) hubFlags() hubFlags {
	return testHubFlags(h.t, h.kubeconfig())
}

// testHubFlags are kubectl's flags set to select the hub of kubeconfig.
func testHubFlags(t *testing.T, kubeconfig string) hubFlags {
	flags := genericclioptions.NewConfigFlags(false)
	cacheDir := t.TempDir()
	flags.KubeConfig, flags.CacheDir = &kubeconfig, &cacheDir
	return hubFlags{flags}
}

// run runs kubectl-switchboard with args against the hub.
func (h *fakeHub) run(args ...string) (stdout, stderr string, err error) {
	return runPlugin(h.t, append(args, h.flags()...)...)
}

func runPlugin(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// hits counts the requests whose "METHOD path" starts with prefix.
func (h *fakeHub) hits(prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.requests {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func (h *fakeHub) addCluster(name string, ready metav1.ConditionStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clusters = append(h.clusters, v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "7"},
		Spec:       v1alpha1.ClusterSpec{Endpoint: "https://" + name + ".example:6443", CredentialsSecretRef: v1alpha1.SecretReference{Name: name + "-credentials"}},
		Status: v1alpha1.ClusterStatus{
			KubernetesVersion: "v1.37.2",
			Conditions:        []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: ready, Reason: "Probed"}},
			ProbeLatency:      &metav1.Duration{Duration: 1500000},
		},
	})
}

func (h *fakeHub) writeJSON(w http.ResponseWriter, code int, obj any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(obj); err != nil {
		h.t.Error(err)
	}
}

func (h *fakeHub) status(w http.ResponseWriter, code int, reason metav1.StatusReason, message string, details *metav1.StatusDetails) {
	h.writeJSON(w, code, &metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: int32(code), Reason: reason, Message: message, Details: details,
	})
}

// deleted answers a DELETE that succeeded.
func (h *fakeHub) deleted(w http.ResponseWriter) {
	h.writeJSON(w, http.StatusOK, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess})
}

func (h *fakeHub) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	line := r.Method + " " + r.URL.Path
	if r.URL.RawQuery != "" {
		line += "?" + r.URL.RawQuery
	}
	h.requests = append(h.requests, line)
	path := r.URL.Path
	switch {
	case r.Method == http.MethodGet && path == clustersPath:
		if strings.Contains(r.Header.Get("Accept"), "as=Table") {
			h.writeJSON(w, http.StatusOK, h.table())
			return
		}
		list := &v1alpha1.ClusterList{ListMeta: metav1.ListMeta{ResourceVersion: "9"}, Items: h.clusters}
		list.SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind("ClusterList"))
		h.writeJSON(w, http.StatusOK, list)
	case r.Method == http.MethodGet && strings.HasPrefix(path, clustersPath+"/"):
		rest := strings.TrimPrefix(path, clustersPath+"/")
		name, sub, _ := strings.Cut(rest, "/")
		var found *v1alpha1.Cluster
		for i := range h.clusters {
			if h.clusters[i].Name == name {
				found = &h.clusters[i]
			}
		}
		switch {
		case sub == "proxy/version" && found != nil && !h.down[name]:
			h.writeJSON(w, http.StatusOK, map[string]string{"gitVersion": "v1.37.2"})
		case sub == "proxy/version":
			// As switchboard answers for a member known to be down.
			w.Header().Set("Retry-After", "1")
			h.status(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "cluster "+name+" is unreachable: connection refused", nil)
		case sub != "":
			h.status(w, http.StatusNotFound, metav1.StatusReasonNotFound, "not found", nil)
		case h.forbidClusterGet:
			h.status(w, http.StatusForbidden, metav1.StatusReasonForbidden,
				`clusters.cluster.switchboard.io "`+name+`" is forbidden: User "alice" cannot get resource "clusters"`,
				&metav1.StatusDetails{Name: name, Group: "cluster.switchboard.io", Kind: "clusters"})
		case found == nil:
			h.status(w, http.StatusNotFound, metav1.StatusReasonNotFound, `clusters.cluster.switchboard.io "`+name+`" not found`,
				&metav1.StatusDetails{Name: name, Group: "cluster.switchboard.io", Kind: "clusters"})
		default:
			c := found.DeepCopy()
			c.SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind("Cluster"))
			h.writeJSON(w, http.StatusOK, c)
		}
	case r.Method == http.MethodDelete && strings.HasPrefix(path, clustersPath+"/"):
		name := strings.TrimPrefix(path, clustersPath+"/")
		for i := range h.clusters {
			if h.clusters[i].Name == name {
				if !h.dryRunDelete(r) {
					h.clusters = append(h.clusters[:i], h.clusters[i+1:]...)
				}
				h.deleted(w)
				return
			}
		}
		h.status(w, http.StatusNotFound, metav1.StatusReasonNotFound, `clusters.cluster.switchboard.io "`+name+`" not found`,
			&metav1.StatusDetails{Name: name, Group: "cluster.switchboard.io", Kind: "clusters"})
	default:
		h.serveObjects(w, r)
	}
}

// dryRunDelete says whether a DELETE asks for a server dry run, in its
// query or in the DeleteOptions of its body, as client-go sends them.
func (h *fakeHub) dryRunDelete(r *http.Request) bool {
	if r.URL.Query().Get("dryRun") == metav1.DryRunAll {
		return true
	}
	body, err := io.ReadAll(r.Body)
	if err != nil || len(body) == 0 {
		return false
	}
	// JSON or, from client-go's clientset for built-in kinds, protobuf.
	var opts metav1.DeleteOptions
	if strings.Contains(r.Header.Get("Content-Type"), "protobuf") {
		_, _, err = clientgoscheme.Codecs.UniversalDeserializer().Decode(body, nil, &opts)
	} else {
		err = json.Unmarshal(body, &opts)
	}
	if err != nil {
		h.t.Errorf("DELETE %s: %v", r.URL.Path, err)
	}
	return slices.Contains(opts.DryRun, metav1.DryRunAll)
}

// table is what switchboard's TableConvertor answers for the Clusters.
func (h *fakeHub) table() *metav1.Table {
	table := &metav1.Table{
		TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"},
		ColumnDefinitions: []metav1.TableColumnDefinition{
			{Name: "Name", Type: "string", Format: "name"},
			{Name: "Endpoint", Type: "string"},
			{Name: "Ready", Type: "string"},
			{Name: "Version", Type: "string"},
			{Name: "Age", Type: "string"},
			{Name: "Latency", Type: "string", Priority: 1},
			{Name: "Reason", Type: "string", Priority: 1},
		},
	}
	for _, c := range h.clusters {
		table.Rows = append(table.Rows, metav1.TableRow{Cells: []any{
			c.Name, c.Spec.Endpoint, string(c.Status.Conditions[0].Status), c.Status.KubernetesVersion, "5m", "1.5ms", c.Status.Conditions[0].Reason,
		}})
	}
	return table
}

// serveObjects answers discovery, GET and server-side apply PATCH of the
// objects install applies.
func (h *fakeHub) serveObjects(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case r.Method == http.MethodGet && path == "/api":
		h.writeJSON(w, http.StatusOK, &metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"}})
		return
	case r.Method == http.MethodGet && path == "/apis":
		list := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
		for gv := range h.resources {
			group, version, ok := strings.Cut(gv, "/")
			if !ok {
				continue
			}
			v := metav1.GroupVersionForDiscovery{GroupVersion: gv, Version: version}
			list.Groups = append(list.Groups, metav1.APIGroup{Name: group, Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v})
		}
		h.writeJSON(w, http.StatusOK, list)
		return
	}
	gv := strings.TrimPrefix(strings.TrimPrefix(path, "/api/"), "/apis/")
	if resources, ok := h.resources[gv]; ok && r.Method == http.MethodGet {
		h.writeJSON(w, http.StatusOK, &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv, APIResources: resources})
		return
	}
	switch r.Method {
	case http.MethodGet:
		if obj, ok := h.objects[path]; ok {
			h.writeJSON(w, http.StatusOK, obj)
			return
		}
		h.status(w, http.StatusNotFound, metav1.StatusReasonNotFound, path+" not found", &metav1.StatusDetails{Name: filepath.Base(path)})
	case http.MethodPatch:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			h.t.Error(err)
		}
		h.patches[path] = body
		if h.invalid[path] {
			h.status(w, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, filepath.Base(path)+` is invalid: spec.ports[1].name: Duplicate value: "https"`, nil)
			return
		}
		// As a hub's NamespaceLifecycle admission answers for an object in
		// a namespace that does not exist.
		if ns, ok := namespaceOf(path); ok {
			if _, exists := h.objects["/api/v1/namespaces/"+ns]; !exists {
				h.status(w, http.StatusNotFound, metav1.StatusReasonNotFound, `namespaces "`+ns+`" not found`, &metav1.StatusDetails{Name: ns, Kind: "namespaces"})
				return
			}
		}
		var obj map[string]any
		if err := json.Unmarshal(body, &obj); err != nil {
			h.t.Errorf("PATCH %s: %v", path, err)
		}
		h.writeJSON(w, http.StatusOK, obj)
	case http.MethodDelete:
		if _, ok := h.objects[path]; !ok {
			h.status(w, http.StatusNotFound, metav1.StatusReasonNotFound, path+" not found", &metav1.StatusDetails{Name: filepath.Base(path)})
			return
		}
		if !h.dryRunDelete(r) {
			delete(h.objects, path)
		}
		h.deleted(w)
	default:
		h.status(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, r.Method, nil)
	}
}

// namespaceOf is the namespace a namespaced object's path names.
func namespaceOf(path string) (string, bool) {
	parts := strings.Split(path, "/")
	for i := 0; i+2 < len(parts); i++ {
		if parts[i] == "namespaces" {
			return parts[i+1], true
		}
	}
	return "", false
}

func testStreams() genericiooptions.IOStreams {
	return genericiooptions.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard}
}
