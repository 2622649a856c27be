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

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/pager"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/fleet"
	"github.com/switchboard-io/switchboard/test/e2e/framework"
)

// fleetLabel marks the Clusters of this test's fleet: a prefixed key, so
// that the selector's "/" travels in the kubeconfig's server URL.
const fleetLabel = "e2e.switchboard.io/fleet"

var podReader = rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}

// TestFleet reads member1 and member2, which hold different pods, through
// the fleet endpoint with the real kubectl and client-go.
func TestFleet(t *testing.T) {
	hub := f.State.Hub.Kubeconfig
	ctx := context.Background()
	selector := fleetLabel + "=yes"
	for _, name := range []string{"member1", "member2"} {
		framework.MustKubectl(t, hub, "label", "cluster", name, selector, "--overwrite")
		t.Cleanup(func() { framework.Kubectl(t, hub, "label", "cluster", name, fleetLabel+"-") })
	}

	// The same namespace in both; "shared" is in both, the rest in one.
	ns := fmt.Sprintf("fleet-%d", time.Now().UnixNano())
	pods := map[string][]string{"member1": {"a-1", "a-2", "shared"}, "member2": {"b-1", "shared"}}
	for member, names := range pods {
		m, err := f.State.Member(member)
		if err != nil {
			t.Fatal(err)
		}
		admin := f.Member(t, member)
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
		for _, name := range names {
			pod := newPod(name, m.Nodes[0])
			pod.Labels = map[string]string{"app": "fleet"}
			if name == "a-2" {
				pod.Labels["tier"] = "db"
			}
			if _, err := admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := []string{"member1/a-1", "member1/a-2", "member1/shared", "member2/b-1", "member2/shared"}

	reader := func(name string, hubClusters []string, memberClusters ...string) *framework.User {
		u := f.CertificateUser(t, fmt.Sprintf("%s-%d", name, time.Now().UnixNano()))
		f.Grant(t, u.Name, proxyRule(hubClusters...))
		for _, m := range memberClusters {
			f.GrantInMember(t, m, u.Name, podReader)
		}
		return u
	}
	dev := reader("fleet-dev", []string{"member1", "member2"}, "member1", "member2")
	kc := dev.FleetKubeconfig(t, selector)
	eventually(t, time.Minute, func() error {
		r := framework.Kubectl(t, kc, "get", "pods", "-n", ns, "-o", "json")
		if r.Err != nil {
			return &kubectlError{r}
		}
		if got := fleetItems(t, r.Stdout); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("pods %v, want %v (stderr %s)", got, want, r.Stderr)
		}
		return nil
	})

	t.Run("get pods prints one table with a CLUSTER column", func(t *testing.T) {
		r := framework.Kubectl(t, kc, "get", "pods", "-A", "-l", "app=fleet")
		if r.Err != nil || r.Stderr != "" {
			t.Fatalf("%v: %s", r.Err, r.Stderr)
		}
		if !lineHas(r.Stdout, "NAMESPACE", "CLUSTER", "NAME", "READY", "STATUS") {
			t.Errorf("no CLUSTER column:\n%s", r.Stdout)
		}
		for _, item := range want {
			member, name, _ := strings.Cut(item, "/")
			if !lineHas(r.Stdout, ns, member+" ", name) {
				t.Errorf("no row for %s in %s:\n%s", name, member, r.Stdout)
			}
		}
		wide := framework.MustKubectl(t, kc, "get", "pods", "-n", ns, "-o", "wide")
		if !lineHas(wide, "CLUSTER", "NODE", "NOMINATED NODE") || !lineHas(wide, "member2", "b-1", "member2-node-0") {
			t.Errorf("-o wide:\n%s", wide)
		}
		names := framework.MustKubectl(t, kc, "get", "pods", "-n", ns, "-o", "name")
		if strings.Count(names, "pod/shared") != 2 || !strings.Contains(names, "pod/b-1") {
			t.Errorf("-o name:\n%s", names)
		}
		yaml := framework.MustKubectl(t, kc, "get", "pods", "-n", ns, "-o", "yaml")
		if strings.Count(yaml, fleet.ClusterAnnotation+": member") != len(want) {
			t.Errorf("-o yaml: not every pod carries %s:\n%s", fleet.ClusterAnnotation, yaml)
		}
	})

	t.Run("-l and --field-selector go to every member", func(t *testing.T) {
		if got := fleetItems(t, framework.MustKubectl(t, kc, "get", "pods", "-n", ns, "-l", "tier=db", "-o", "json")); !reflect.DeepEqual(got, []string{"member1/a-2"}) {
			t.Errorf("-l tier=db: %v", got)
		}
		if got := fleetItems(t, framework.MustKubectl(t, kc, "get", "pods", "-n", ns, "--field-selector", "metadata.name=shared", "-o", "json")); !reflect.DeepEqual(got, []string{"member1/shared", "member2/shared"}) {
			t.Errorf("--field-selector metadata.name=shared: %v", got)
		}
	})

	t.Run("--chunk-size=1 and client-go's pager walk the same list", func(t *testing.T) {
		paged := framework.Kubectl(t, kc, "get", "pods", "-n", ns, "-o", "json", "--chunk-size=1", "-v=6")
		if paged.Err != nil {
			t.Fatalf("%v: %s", paged.Err, paged.Stderr)
		}
		if got := fleetItems(t, paged.Stdout); !reflect.DeepEqual(got, want) {
			t.Errorf("--chunk-size=1: %v, want %v", got, want)
		}
		if n := strings.Count(paged.Stderr, "continue="); n < len(want)-1 {
			t.Errorf("--chunk-size=1 asked for %d pages after the first, want %d:\n%s", n, len(want)-1, paged.Stderr)
		}
		client := kubernetes.NewForConfigOrDie(dev.FleetConfig(t, selector))
		pages := 0
		p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			pages++
			return client.CoreV1().Pods(ns).List(ctx, opts)
		})
		p.PageSize = 2
		var got []string
		if err := p.EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
			pod := obj.(*corev1.Pod)
			got = append(got, pod.Annotations[fleet.ClusterAnnotation]+"/"+pod.Name)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) || pages != 3 {
			t.Errorf("the pager: %v in %d pages, want %v in 3", got, pages, want)
		}
	})

	t.Run("get NAME: the object from its member, or 409 when several have it", func(t *testing.T) {
		out := framework.MustKubectl(t, kc, "get", "pod", "b-1", "-n", ns, "-o", "jsonpath={.metadata.annotations}")
		if !strings.Contains(out, `"switchboard.io/cluster":"member2"`) {
			t.Errorf("get pod b-1: %s", out)
		}
		r := framework.Kubectl(t, kc, "get", "pod", "shared", "-n", ns)
		if r.Err == nil || !strings.Contains(r.Stderr, "(Conflict)") || !strings.Contains(r.Stderr, "member1, member2") {
			t.Errorf("get pod shared: %v %s", r.Err, r.Stderr)
		}
	})

	t.Run("get -w sees a pod created in each member", func(t *testing.T) {
		_, out := framework.StartKubectl(t, kc, nil, "get", "pods", "-n", ns, "-w")
		framework.WaitForOutput(t, out, "b-1", time.Minute)
		for _, member := range []string{"member1", "member2"} {
			m, _ := f.State.Member(member)
			if _, err := f.Member(t, member).CoreV1().Pods(ns).Create(ctx, newPod("watched-"+member, m.Nodes[0]), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		framework.WaitForOutput(t, out, "watched-member1", time.Minute)
		framework.WaitForOutput(t, out, "watched-member2", time.Minute)
		if !lineHas(out.String(), "member2", "watched-member2") {
			t.Errorf("the watch's row for watched-member2 does not name member2:\n%s", out)
		}
		for _, member := range []string{"member1", "member2"} {
			_ = f.Member(t, member).CoreV1().Pods(ns).Delete(ctx, "watched-"+member, metav1.DeleteOptions{})
		}
	})

	t.Run("a caller the hub lets into member1 only sees member1 only", func(t *testing.T) {
		u := reader("fleet-m1", []string{"member1"}, "member1", "member2")
		r := framework.Kubectl(t, u.FleetKubeconfig(t, selector), "get", "pods", "-n", ns, "-o", "json")
		if r.Err != nil || r.Stderr != "" {
			t.Fatalf("%v: %s", r.Err, r.Stderr)
		}
		if got := fleetItems(t, r.Stdout); !reflect.DeepEqual(got, want[:3]) {
			t.Errorf("pods %v, want member1's only", got)
		}
	})

	t.Run("a member that refuses the caller is named, and the others answer", func(t *testing.T) {
		u := reader("fleet-forbidden", []string{"member1", "member2"}, "member1")
		r := framework.Kubectl(t, u.FleetKubeconfig(t, selector), "get", "pods", "-n", ns)
		if r.Err != nil {
			t.Fatalf("%v: %s", r.Err, r.Stderr)
		}
		if !strings.Contains(r.Stderr, `Warning: cluster "member2": pods is forbidden`) {
			t.Errorf("no warning for member2: %s", r.Stderr)
		}
		if !lineHas(r.Stdout, "member1", "a-1") || strings.Contains(r.Stdout, "member2") {
			t.Errorf("pods:\n%s", r.Stdout)
		}
	})

	t.Run("writes and exec are refused with 405", func(t *testing.T) {
		for _, args := range [][]string{
			{"delete", "pod", "a-1", "-n", ns},
			{"label", "pod", "a-1", "-n", ns, "x=y"},
			{"exec", "a-1", "-n", ns, "--", "true"},
		} {
			r := framework.Kubectl(t, kc, args...)
			// kubectl exec prints the message alone, without the reason.
			if r.Err == nil || !strings.Contains(r.Stderr, "the fleet endpoint only reads") || !strings.Contains(r.Stderr, "clusters/<name>/proxy") {
				t.Errorf("kubectl %s: %v %s", strings.Join(args, " "), r.Err, r.Stderr)
			}
		}
		if _, err := f.Member(t, "member1").CoreV1().Pods(ns).Get(ctx, "a-1", metav1.GetOptions{}); err != nil {
			t.Errorf("a-1 after the refused delete: %v", err)
		}
	})

	t.Run("a member's identity policy applies to fleet reads", func(t *testing.T) {
		sb := f.Switchboard(t).ClusterV1alpha1().Clusters()
		member1, err := sb.Get(ctx, "member1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		refusing := &v1alpha1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: "fleet-refusing", Labels: map[string]string{fleetLabel: "yes"}},
			Spec:       *member1.Spec.DeepCopy(),
		}
		refusing.Spec.Identity = &v1alpha1.IdentityPolicy{Rules: []v1alpha1.IdentityRule{{Expression: "false", Message: "fleet-e2e refuses everyone"}}}
		if _, err := sb.Create(ctx, refusing, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sb.Delete(context.Background(), refusing.Name, metav1.DeleteOptions{}) })
		u := reader("fleet-policy", []string{"member1", refusing.Name}, "member1")
		fleetKC := u.FleetKubeconfig(t, selector)
		eventually(t, time.Minute, func() error {
			r := framework.Kubectl(t, fleetKC, "get", "pods", "-n", ns)
			if r.Err != nil || !strings.Contains(r.Stderr, `Warning: cluster "fleet-refusing"`) || !strings.Contains(r.Stderr, "fleet-e2e refuses everyone") || !lineHas(r.Stdout, "member1", "a-1") {
				return &kubectlError{r}
			}
			return nil
		})
	})

	t.Run("a stopped member is named while the other answers, and an informer stays in sync", func(t *testing.T) {
		client := kubernetes.NewForConfigOrDie(dev.FleetConfig(t, selector))
		// An informer's store is keyed by namespace and name, so the two
		// pods named shared would be one entry: it leaves them out.
		factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name!=shared" }))
		informer := factory.Core().V1().Pods().Informer()
		stop := make(chan struct{})
		t.Cleanup(func() { close(stop) })
		factory.Start(stop)
		if !cache.WaitForCacheSync(stop, informer.HasSynced) {
			t.Fatal("the informer did not sync")
		}
		storeHas := func(keys ...string) func() error {
			keys = append([]string(nil), keys...)
			sort.Strings(keys)
			return func() error {
				var got []string
				for _, obj := range informer.GetStore().List() {
					pod := obj.(*corev1.Pod)
					got = append(got, pod.Annotations[fleet.ClusterAnnotation]+"/"+pod.Name)
				}
				sort.Strings(got)
				if !reflect.DeepEqual(got, keys) {
					return fmt.Errorf("the informer holds %v, want %v", got, keys)
				}
				return nil
			}
		}
		unshared := []string{"member1/a-1", "member1/a-2", "member2/b-1"}
		eventually(t, time.Minute, storeHas(unshared...))

		restart := stopProcess(t, "member2-kube-apiserver")
		waitForReady(t, "member2", metav1.ConditionFalse, v1alpha1.ReasonUnreachable)
		r := framework.Kubectl(t, kc, "get", "pods", "-n", ns)
		if r.Err != nil {
			t.Fatalf("%v: %s", r.Err, r.Stderr)
		}
		if !strings.Contains(r.Stderr, `Warning: cluster "member2" is unreachable: its last probe`) {
			t.Errorf("no fast-fail warning for the stopped member2: %s", r.Stderr)
		}
		if !lineHas(r.Stdout, "member1", "a-1") {
			t.Errorf("member1's pods while member2 is down:\n%s", r.Stdout)
		}
		// While member2 is down, the informer holds what it can list.
		eventually(t, time.Minute, storeHas(unshared[:2]...))

		restart()
		waitForReady(t, "member2", metav1.ConditionTrue, v1alpha1.ReasonProbed)
		eventually(t, 2*time.Minute, storeHas(unshared...))
		m, _ := f.State.Member("member2")
		if _, err := f.Member(t, "member2").CoreV1().Pods(ns).Create(ctx, newPod("after-restart", m.Nodes[0]), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, storeHas(append(append([]string(nil), unshared...), "member2/after-restart")...))
	})
}

// fleetItems are the member/name of each item of a list in JSON, in order.
func fleetItems(t *testing.T, out string) []string {
	t.Helper()
	var list struct {
		Items []metav1.PartialObjectMetadata `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("decoding %q: %v", out, err)
	}
	got := []string{}
	for _, item := range list.Items {
		got = append(got, item.Annotations[fleet.ClusterAnnotation]+"/"+item.Name)
	}
	return got
}
