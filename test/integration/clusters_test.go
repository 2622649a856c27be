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
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	applyv1alpha1 "github.com/switchboard-io/switchboard/pkg/generated/applyconfiguration/cluster/v1alpha1"
	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
)

func newCluster(name, endpoint string) *v1alpha1.Cluster {
	return &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"env": "test"}},
		Spec: v1alpha1.ClusterSpec{
			Endpoint:             endpoint,
			CredentialsSecretRef: v1alpha1.SecretReference{Name: name + "-credentials"},
		},
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// waitForEvent waits for the watch event of the given type that carries the
// Cluster at the given resourceVersion, passing over others (the health
// prober writes status concurrently).
func waitForEvent(t *testing.T, w watch.Interface, eventType watch.EventType, name, resourceVersion string) {
	t.Helper()
	for {
		ev := nextEvent(t, w)
		c, ok := ev.Object.(*v1alpha1.Cluster)
		if ok && ev.Type == eventType && c.Name == name && c.ResourceVersion == resourceVersion {
			return
		}
	}
}

// nextEvent waits for the next watch event.
func nextEvent(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch closed early")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no watch event within 30s")
	}
	return watch.Event{}
}

// TestClusterLifecycle drives every verb through the generated clientset
// against the embedded etcd.
func TestClusterLifecycle(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, dataDirArg(t.TempDir()))
	clusters := s.clientset().ClusterV1alpha1().Clusters()
	ctx := ctxFor(t)

	w, err := clusters.Watch(ctx, metav1.ListOptions{LabelSelector: "env=test"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// create: status sent by the client is dropped, generation starts at 1.
	in := newCluster("member1", "https://10.0.0.12:6443")
	in.Status.KubernetesVersion = "v0.0.0-forged"
	created, err := clusters.Create(ctx, in, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.Status.KubernetesVersion != "" || created.Generation != 1 || created.UID == "" {
		t.Fatalf("created = %+v", created)
	}
	waitForEvent(t, w, watch.Added, "member1", created.ResourceVersion)

	// get and list
	got, err := clusters.Get(ctx, "member1", metav1.GetOptions{})
	if err != nil || got.Spec.Endpoint != "https://10.0.0.12:6443" || got.Spec.CredentialsSecretRef.Name != "member1-credentials" {
		t.Fatalf("get = %+v, %v", got, err)
	}
	member2, err := clusters.Create(ctx, newCluster("member2", "https://10.0.0.13:6443"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForEvent(t, w, watch.Added, "member2", member2.ResourceVersion)
	list, err := clusters.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range list.Items {
		names = append(names, c.Name)
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "member1,member2" {
		t.Fatalf("list = %v", names)
	}
	if _, err := clusters.Create(ctx, newCluster("member1", "https://10.0.0.12:6443"), metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second create: err = %v, want AlreadyExists", err)
	}

	// update: the spec changes, the generation moves, status is untouched.
	// (The health prober writes status concurrently: read, change, write
	// again on conflict, as every client must.)
	var updated *v1alpha1.Cluster
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current, err := clusters.Get(ctx, "member1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		current.Spec.Endpoint = "https://10.0.0.99:6443"
		current.Spec.TLSServerName = "member1.internal"
		updated, err = clusters.Update(ctx, current, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if updated.Generation != 2 || updated.Spec.Endpoint != "https://10.0.0.99:6443" {
		t.Fatalf("updated = %+v", updated)
	}
	waitForEvent(t, w, watch.Modified, "member1", updated.ResourceVersion)
	stale := updated.DeepCopy()
	stale.ResourceVersion = created.ResourceVersion
	if _, err := clusters.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("update at a stale resourceVersion: err = %v, want Conflict", err)
	}

	// status update: status changes, spec and generation do not.
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	var statusUpdated *v1alpha1.Cluster
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		withStatus, err := clusters.Get(ctx, "member1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		withStatus.Spec.Endpoint = "https://ignored:6443"
		withStatus.Status = v1alpha1.ClusterStatus{
			Conditions: []metav1.Condition{{
				Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Probed",
				Message: "readyz ok", LastTransitionTime: now, ObservedGeneration: 2,
			}},
			KubernetesVersion: "v1.37.2",
			LastProbeTime:     &now,
		}
		statusUpdated, err = clusters.UpdateStatus(ctx, withStatus, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if statusUpdated.Status.KubernetesVersion != "v1.37.2" || statusUpdated.Spec.Endpoint != "https://10.0.0.99:6443" || statusUpdated.Generation != 2 {
		t.Fatalf("after status update = %+v", statusUpdated)
	}
	waitForEvent(t, w, watch.Modified, "member1", statusUpdated.ResourceVersion)

	// server-side apply of the spec, by a second manager, keeps the status.
	apply := applyv1alpha1.Cluster("member1").
		WithSpec(applyv1alpha1.ClusterSpec().
			WithEndpoint("https://10.0.0.100:6443").
			WithCredentialsSecretRef(applyv1alpha1.SecretReference().WithName("member1-credentials")))
	applied, err := clusters.Apply(ctx, apply, metav1.ApplyOptions{FieldManager: "integration-test", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if applied.Spec.Endpoint != "https://10.0.0.100:6443" || applied.Status.KubernetesVersion != "v1.37.2" {
		t.Fatalf("after apply = %+v", applied)
	}
	if !hasManager(applied, "integration-test", "") {
		t.Errorf("apply manager missing from managedFields: %+v", applied.ManagedFields)
	}
	waitForEvent(t, w, watch.Modified, "member1", applied.ResourceVersion)

	// server-side apply of the status, through the subresource.
	statusApply := applyv1alpha1.Cluster("member1").
		WithStatus(applyv1alpha1.ClusterStatus().WithKubernetesVersion("v1.37.3"))
	statusApplied, err := clusters.ApplyStatus(ctx, statusApply, metav1.ApplyOptions{FieldManager: "health-probe", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if statusApplied.Status.KubernetesVersion != "v1.37.3" || statusApplied.Spec.Endpoint != "https://10.0.0.100:6443" {
		t.Fatalf("after status apply = %+v", statusApplied)
	}
	if !hasManager(statusApplied, "health-probe", "status") {
		t.Errorf("status apply manager missing: %+v", statusApplied.ManagedFields)
	}
	waitForEvent(t, w, watch.Modified, "member1", statusApplied.ResourceVersion)

	// A status written through the main resource by apply is reset, not stored.
	sneaky := applyv1alpha1.Cluster("member1").
		WithStatus(applyv1alpha1.ClusterStatus().WithKubernetesVersion("v9.9.9"))
	afterSneaky, err := clusters.Apply(ctx, sneaky, metav1.ApplyOptions{FieldManager: "sneaky", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if afterSneaky.Status.KubernetesVersion != "v1.37.3" {
		t.Fatalf("status set through the main resource: %q", afterSneaky.Status.KubernetesVersion)
	}

	// delete
	if err := clusters.Delete(ctx, "member1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		ev := nextEvent(t, w)
		if ev.Type == watch.Deleted {
			if name := ev.Object.(*v1alpha1.Cluster).Name; name != "member1" {
				t.Fatalf("deleted %q", name)
			}
			break
		}
	}
	if _, err := clusters.Get(ctx, "member1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: err = %v, want NotFound", err)
	}
	if err := clusters.Delete(ctx, "member1", metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("second delete: err = %v, want NotFound", err)
	}
}

func hasManager(c *v1alpha1.Cluster, manager, subresource string) bool {
	for _, m := range c.ManagedFields {
		if m.Manager == manager && m.Subresource == subresource && m.Operation == metav1.ManagedFieldsOperationApply {
			return true
		}
	}
	return false
}

// TestInvalidClusterNamesEveryField checks that one bad Cluster gets one 422
// that names every offending field.
func TestInvalidClusterNamesEveryField(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, dataDirArg(t.TempDir()))
	clusters := s.clientset().ClusterV1alpha1().Clusters()
	ctx := ctxFor(t)

	bad := &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "member1"},
		Spec: v1alpha1.ClusterSpec{
			Endpoint:      "http://admin:hunter2@10.0.0.12:6443?x=1",
			TLSServerName: "not a name",
			ProxyURL:      "ftp://proxy",
		},
	}
	_, err := clusters.Create(ctx, bad, metav1.CreateOptions{})
	var status apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !asStatus(err, &status) {
		t.Fatalf("err = %v, want Invalid", err)
	}
	if code := status.Status().Code; code != http.StatusUnprocessableEntity {
		t.Errorf("code = %d, want 422", code)
	}
	fields := map[string]bool{}
	for _, cause := range status.Status().Details.Causes {
		fields[cause.Field] = true
	}
	for _, f := range []string{"spec.endpoint", "spec.credentialsSecretRef.name", "spec.tlsServerName", "spec.proxyURL"} {
		if !fields[f] {
			t.Errorf("no cause names %s; causes: %+v", f, status.Status().Details.Causes)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error echoes the password: %v", err)
	}

	// The same on update.
	good, err := clusters.Create(ctx, newCluster("member1", "https://10.0.0.12:6443"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good.Spec.Endpoint = "10.0.0.12"
	// Unconditional, so that a status write by the health prober in
	// between cannot turn it into a conflict.
	good.ResourceVersion = ""
	if _, err := clusters.Update(ctx, good, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.endpoint") {
		t.Fatalf("invalid update: err = %v", err)
	}
}

func asStatus(err error, out *apierrors.APIStatus) bool {
	s, ok := err.(apierrors.APIStatus)
	if ok {
		*out = s
	}
	return ok
}

// TestStrictFieldValidation sends raw JSON with a field the API does not have.
func TestStrictFieldValidation(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, dataDirArg(t.TempDir()))
	client := s.httpClient(s.adminConfig())
	ctx := ctxFor(t)
	url := s.host + "/apis/cluster.switchboard.io/v1alpha1/clusters"
	body := []byte(`{"apiVersion":"cluster.switchboard.io/v1alpha1","kind":"Cluster",
		"metadata":{"name":"member1"},
		"spec":{"endpoint":"https://10.0.0.12:6443","credentialsSecretRef":{"name":"c"},"endpointt":"typo"}}`)

	code, out := do(ctx, client, http.MethodPost, url+"?fieldValidation=Strict", "application/json", body)
	if code != http.StatusBadRequest || !strings.Contains(out, `unknown field \"spec.endpointt\"`) {
		t.Fatalf("strict: %d %s", code, out)
	}

	// Without strict validation, the unknown field is dropped with a warning.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"?fieldValidation=Warn", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.Contains(resp.Header.Get("Warning"), "spec.endpointt") {
		t.Fatalf("warn: %d, Warning: %q", resp.StatusCode, resp.Header.Get("Warning"))
	}

	// A body that is not JSON at all is a 400, not a 500.
	code, out = do(ctx, client, http.MethodPost, url, "application/json", []byte("{not json"))
	if code != http.StatusBadRequest || !strings.Contains(out, `"kind":"Status"`) {
		t.Fatalf("garbage body: %d %s", code, out)
	}
}

// TestInsecureSkipTLSVerifyWarns checks the warning a client sees.
func TestInsecureSkipTLSVerifyWarns(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, dataDirArg(t.TempDir()))
	config := s.adminConfig()
	handler := &recordingWarnings{}
	config.WarningHandler = handler
	c := clientset.NewForConfigOrDie(config)
	in := newCluster("member1", "https://10.0.0.12:6443")
	in.Spec.InsecureSkipTLSVerify = true
	if _, err := c.ClusterV1alpha1().Clusters().Create(ctxFor(t), in, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(handler.messages) != 1 || !strings.HasPrefix(handler.messages[0], "spec.insecureSkipTLSVerify:") {
		t.Fatalf("warnings = %q", handler.messages)
	}
}

type recordingWarnings struct{ messages []string }

func (r *recordingWarnings) HandleWarningHeader(_ int, _ string, message string) {
	r.messages = append(r.messages, message)
}

// TestTableOutput asks for the table kubectl get prints.
func TestTableOutput(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, dataDirArg(t.TempDir()))
	ctx := ctxFor(t)
	if _, err := s.clientset().ClusterV1alpha1().Clusters().Create(ctx, newCluster("member1", "https://10.0.0.12:6443"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.host+"/apis/cluster.switchboard.io/v1alpha1/clusters", nil)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := s.httpClient(s.adminConfig()).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var table metav1.Table
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	var columns []string
	for _, c := range table.ColumnDefinitions {
		columns = append(columns, c.Name)
	}
	if strings.Join(columns, ",") != "Name,Endpoint,Ready,Version,Age,Latency,Reason,Connection,Agent" {
		t.Fatalf("columns = %v in %s", columns, raw)
	}
	// Ready is Unknown until the first probe, then False: without a hub
	// there are no credentials (CredentialsMissing).
	if len(table.Rows) != 1 || table.Rows[0].Cells[0] != "member1" || (table.Rows[0].Cells[2] != "Unknown" && table.Rows[0].Cells[2] != "False") {
		t.Fatalf("rows = %+v", table.Rows)
	}
	// A Cluster that names no connection is reached directly; it has no agent.
	if cells := table.Rows[0].Cells; cells[7] != "Direct" || cells[8] != "" {
		t.Errorf("connection and agent = %v, %v; want Direct and nothing", cells[7], cells[8])
	}
}

// TestProbedWithoutHub: without a hub there are no credentials to read, and
// the health prober says so in the status instead of leaving it empty.
func TestProbedWithoutHub(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, dataDirArg(t.TempDir()))
	clusters := s.clientset().ClusterV1alpha1().Clusters()
	ctx := ctxFor(t)
	if _, err := clusters.Create(ctx, newCluster("member1", "https://10.0.0.12:6443"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		c, err := clusters.Get(ctx, "member1", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ready := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady)
		return ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason == v1alpha1.ReasonCredentialsMissing &&
			strings.Contains(ready.Message, "without a hub connection") && c.Status.LastProbeTime != nil, nil
	})
	if err != nil {
		c, _ := clusters.Get(ctx, "member1", metav1.GetOptions{})
		t.Fatalf("status never said CredentialsMissing: %v; status %+v", err, c.Status)
	}
}
