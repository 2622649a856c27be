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

package join

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/managedfields"
	fakediscovery "k8s.io/client-go/discovery/fake"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	sbfake "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned/fake"
	sbscheme "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned/scheme"
)

const (
	testName     = "prod"
	memberHost   = "https://member.example:6443"
	hubHost      = "https://hub.example:6443"
	verifiedText = "GET /version through the hub answered: Kubernetes v1.37.2"
	// tokenSecretCA is what the fake token controller puts under ca.crt.
	tokenSecretCA = "ca-from-the-token-secret"
	// testJoiner is who the member kubeconfig is.
	testJoiner = "alice@example.com"
)

// memberKubeconfigCA is the CA the member kubeconfig trusts.
var memberKubeconfigCA = []byte("ca-from-the-member-kubeconfig")

var secretsGVR = corev1.SchemeGroupVersion.WithResource("secrets")

// fixture is a member, a hub and switchboard's API on the hub, all fake,
// with the reactors Join needs: SelfSubjectAccessReviews that allow (but
// what a test denies), switchboard's group in the hub's discovery, and a
// token controller that names and fills token Secrets.
type fixture struct {
	t      *testing.T
	member *k8sfake.Clientset
	hub    *k8sfake.Clientset
	sb     *sbfake.Clientset
	// clusters holds sb's Clusters, with field management.
	clusters k8stesting.ObjectTracker

	memberConfig *rest.Config
	hubConfig    *rest.Config

	// memberDenied and hubDenied hold describe() of the access reviews
	// each side refuses.
	memberDenied map[string]bool
	hubDenied    map[string]bool

	tokens *tokenController
	// hubTokens fills the token Secrets of agents' hub identities.
	hubTokens *tokenController

	// checkToken stands for the SelfSubjectReview with a token; nil accepts.
	checkToken tokenChecker
	// checkAgentToken stands for the same check of an agent's hub token.
	checkAgentToken tokenChecker
	checkedWith     [][]byte
	// verifyErr is what the check through the hub returns.
	verifyErr error
}

func newFixture(t *testing.T, memberObjects ...runtime.Object) *fixture {
	t.Helper()
	f := &fixture{
		t:      t,
		member: k8sfake.NewClientset(memberObjects...),
		hub:    k8sfake.NewClientset(),
		sb:     sbfake.NewSimpleClientset(),
		// sbfake.NewClientset cannot apply a Cluster: its type converter
		// looks for the model io.switchboard.cluster.v1alpha1.Cluster, and
		// pkg/generated/applyconfiguration/internal names it
		// com.github.switchboard-io.switchboard.pkg.apis.cluster.v1alpha1.Cluster.
		// Its schema is deduced anyway, as here.
		clusters:     k8stesting.NewFieldManagedObjectTracker(sbscheme.Scheme, sbscheme.Codecs.UniversalDecoder(), managedfields.NewDeducedTypeConverter()),
		memberConfig: &rest.Config{Host: memberHost, TLSClientConfig: rest.TLSClientConfig{CAData: memberKubeconfigCA}},
		hubConfig:    &rest.Config{Host: hubHost},
		memberDenied: map[string]bool{},
		hubDenied:    map[string]bool{},
	}
	f.sb.PrependReactor("*", "*", k8stesting.ObjectReaction(f.clusters))
	reviewReactor(f.member, func() map[string]bool { return f.memberDenied })
	reviewReactor(f.hub, func() map[string]bool { return f.hubDenied })
	f.hubDiscovery().Resources = []*metav1.APIResourceList{{
		GroupVersion: v1alpha1.SchemeGroupVersion.String(),
		APIResources: []metav1.APIResource{{Name: "clusters", Kind: "Cluster"}, {Name: "clusters/proxy", Kind: "ClusterProxyOptions"}},
	}}
	// A member of Kubernetes 1.30 or newer, which knows who joins it.
	f.memberDiscovery().Resources = []*metav1.APIResourceList{{
		GroupVersion: admissionregistrationv1.SchemeGroupVersion.String(),
		APIResources: []metav1.APIResource{{Name: "validatingadmissionpolicies", Kind: "ValidatingAdmissionPolicy"},
			{Name: "validatingadmissionpolicybindings", Kind: "ValidatingAdmissionPolicyBinding"}},
	}}
	f.member.PrependReactor("create", "selfsubjectreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		return true, selfSubjectReview(testJoiner), nil
	})
	f.tokens = newTokenController(f.member)
	f.hubTokens = newTokenController(f.hub)
	return f
}

func (f *fixture) hubDiscovery() *fakediscovery.FakeDiscovery {
	return f.hub.Discovery().(*fakediscovery.FakeDiscovery)
}

func (f *fixture) memberDiscovery() *fakediscovery.FakeDiscovery {
	return f.member.Discovery().(*fakediscovery.FakeDiscovery)
}

// options are Join's options against the fakes, with hooks for the token
// check and the check through the hub.
func (f *fixture) options() Options {
	return Options{
		Name:          testName,
		MemberConfig:  f.memberConfig,
		HubConfig:     f.hubConfig,
		TokenTimeout:  5 * time.Second,
		VerifyTimeout: time.Second,
		MemberClient:  f.member,
		HubClient:     f.hub,
		Switchboard:   f.sb,
		checkToken: func(ctx context.Context, token []byte) error {
			f.checkedWith = append(f.checkedWith, token)
			if f.checkToken != nil {
				return f.checkToken(ctx, token)
			}
			return nil
		},
		verify: func(context.Context) (string, error) {
			if f.verifyErr != nil {
				return "", f.verifyErr
			}
			return verifiedText, nil
		},
	}
}

func (f *fixture) join() (*Result, error) {
	return f.joinWith(f.options())
}

func (f *fixture) joinWith(o Options) (*Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Join(ctx, o)
}

// mustJoin joins and fails the test on an error.
func (f *fixture) mustJoin() *Result {
	f.t.Helper()
	res, err := f.join()
	if err != nil {
		f.t.Fatalf("Join: %v", err)
	}
	return res
}

// joined is a fixture after a successful first join, with the recorded
// actions cleared.
func joined(t *testing.T, memberObjects ...runtime.Object) *fixture {
	t.Helper()
	f := newFixture(t, memberObjects...)
	f.mustJoin()
	f.clearActions()
	f.checkedWith = nil
	return f
}

func (f *fixture) unjoinOptions(withMember bool) UnjoinOptions {
	o := UnjoinOptions{Name: testName, HubClient: f.hub, Switchboard: f.sb}
	if withMember {
		o.MemberClient = f.member
	}
	return o
}

func (f *fixture) clearActions() {
	f.member.ClearActions()
	f.hub.ClearActions()
	f.sb.ClearActions()
}

// memberWrites and hubWrites are the changing requests the fakes saw.
func (f *fixture) memberWrites() []string { return writes(&f.member.Fake) }
func (f *fixture) hubWrites() []string    { return append(writes(&f.hub.Fake), writes(&f.sb.Fake)...) }

// writes lists the requests other than reads and access reviews, as
// "verb resource name".
func writes(fake *k8stesting.Fake) []string {
	var out []string
	for _, a := range fake.Actions() {
		if isRead(a) {
			continue
		}
		name := ""
		switch a := a.(type) {
		case k8stesting.CreateAction: // updates too: they have the same methods

			if m, err := meta.Accessor(a.GetObject()); err == nil {
				name = m.GetName()
				if name == "" {
					// As requested: the API server generates the name.
					name = m.GetGenerateName() + "*"
				}
			}
		case k8stesting.DeleteAction:
			name = a.GetName()
		case k8stesting.PatchAction:
			name = a.GetName()
		}
		out = append(out, strings.TrimSpace(a.GetVerb()+" "+a.GetResource().Resource+" "+name))
	}
	return out
}

// answerDryRuns makes the fakes answer a write with dryRun=All as a real
// server does, storing nothing. dryRuns records those as "verb resource",
// and wet the writes without it, which the fakes store.
func (f *fixture) answerDryRuns() (dryRuns, wet *[]string) {
	dryRuns, wet = new([]string), new([]string)
	record := func(action k8stesting.Action) (bool, runtime.Object, error) {
		var opts []string
		switch a := action.(type) {
		case k8stesting.CreateActionImpl:
			opts = a.CreateOptions.DryRun
		case k8stesting.UpdateActionImpl:
			opts = a.UpdateOptions.DryRun
		case k8stesting.DeleteActionImpl:
			opts = a.DeleteOptions.DryRun
		case k8stesting.PatchActionImpl:
			opts = a.PatchOptions.DryRun
		default:
			return false, nil, nil
		}
		what := action.GetVerb() + " " + action.GetResource().Resource
		if len(opts) == 1 && opts[0] == metav1.DryRunAll {
			*dryRuns = append(*dryRuns, what)
			// As a dry run on a real server: answered, not stored.
			var answer runtime.Object
			if a, ok := action.(interface{ GetObject() runtime.Object }); ok {
				answer = a.GetObject()
			}
			return true, answer, nil
		}
		*wet = append(*wet, what)
		return false, nil, nil
	}
	for _, c := range []*k8stesting.Fake{&f.member.Fake, &f.hub.Fake, &f.sb.Fake} {
		c.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if isRead(a) {
				return false, nil, nil
			}
			return record(a)
		})
		c.PrependReactor("update", "*", record)
		c.PrependReactor("patch", "*", record)
		c.PrependReactor("delete", "*", record)
	}
	return dryRuns, wet
}

func isRead(a k8stesting.Action) bool {
	switch a.GetVerb() {
	case "get", "list", "watch":
		return true
	case "create":
		return a.GetResource().Resource == "selfsubjectaccessreviews" || a.GetResource().Resource == "selfsubjectreviews"
	}
	return false
}

// reviewReactor answers SelfSubjectAccessReviews: allowed, but for the
// attributes whose describe() is in denied().
func reviewReactor(c *k8sfake.Clientset, denied func() map[string]bool) {
	c.PrependReactor("create", "selfsubjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		review := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
		attrs := review.Spec.ResourceAttributes
		review.Status.Allowed = attrs != nil && !denied()[describe(*attrs)]
		if !review.Status.Allowed {
			review.Status.Reason = "denied by the test"
		}
		return true, review, nil
	})
}

// tokenController names token Secrets created with generateName, as the API
// server does, and fills them as the member's token controller does.
type tokenController struct {
	mu      sync.Mutex
	tracker k8stesting.ObjectTracker
	created int
	// fillAfterGets is how many reads of a new token Secret find it still
	// empty; negative means the controller never runs.
	fillAfterGets int
	reads         map[string]int
}

func newTokenController(c *k8sfake.Clientset) *tokenController {
	tc := &tokenController{tracker: c.Tracker(), reads: map[string]int{}}
	c.PrependReactor("create", "secrets", func(action k8stesting.Action) (bool, runtime.Object, error) {
		s := action.(k8stesting.CreateAction).GetObject().(*corev1.Secret)
		if s.Name == "" && s.GenerateName != "" {
			tc.mu.Lock()
			tc.created++
			s.Name = fmt.Sprintf("%s%05d", s.GenerateName, tc.created)
			if s.Type == corev1.SecretTypeServiceAccountToken {
				tc.reads[s.Name] = 0
			}
			tc.mu.Unlock()
		}
		return false, nil, nil // the object tracker stores it
	})
	c.PrependReactor("get", "secrets", func(action k8stesting.Action) (bool, runtime.Object, error) {
		name := action.(k8stesting.GetAction).GetName()
		tc.mu.Lock()
		defer tc.mu.Unlock()
		reads, pending := tc.reads[name]
		if !pending || tc.fillAfterGets < 0 {
			return false, nil, nil
		}
		if reads < tc.fillAfterGets {
			tc.reads[name] = reads + 1
			return false, nil, nil
		}
		obj, err := tc.tracker.Get(secretsGVR, action.GetNamespace(), name)
		if err != nil {
			return false, nil, nil
		}
		s := obj.(*corev1.Secret).DeepCopy()
		s.Data = map[string][]byte{
			corev1.ServiceAccountTokenKey:  tokenFor(name),
			corev1.ServiceAccountRootCAKey: []byte(tokenSecretCA),
		}
		if err := tc.tracker.Update(secretsGVR, s, action.GetNamespace(), metav1.UpdateOptions{FieldManager: "kube-controller-manager"}); err != nil {
			return true, nil, err
		}
		delete(tc.reads, name)
		return false, nil, nil
	})
	return tc
}

func (tc *tokenController) setFillAfterGets(n int) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.fillAfterGets = n
}

// tokenFor is the token the fake controller puts in a Secret.
func tokenFor(secretName string) []byte { return []byte("token-of-" + secretName) }

// Reading objects back.

func (f *fixture) tokenSecret() *corev1.Secret {
	f.t.Helper()
	s, err := findTokenSecret(context.Background(), impersonator(f.member, nil))
	if err != nil {
		f.t.Fatalf("finding the token Secret: %v", err)
	}
	return s
}

func (f *fixture) memberTokenSecrets() []string {
	f.t.Helper()
	list, err := f.member.CoreV1().Secrets(Namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	var names []string
	for _, s := range list.Items {
		if s.Type == corev1.SecretTypeServiceAccountToken {
			names = append(names, s.Name)
		}
	}
	sort.Strings(names)
	return names
}

func (f *fixture) hubSecret(namespace string) *corev1.Secret {
	f.t.Helper()
	s, err := f.hub.CoreV1().Secrets(namespace).Get(context.Background(), SecretName(testName), metav1.GetOptions{})
	if err != nil {
		f.t.Fatalf("hub Secret: %v", err)
	}
	return s
}

func (f *fixture) cluster() *v1alpha1.Cluster {
	f.t.Helper()
	c, err := f.sb.ClusterV1alpha1().Clusters().Get(context.Background(), testName, metav1.GetOptions{})
	if err != nil {
		f.t.Fatalf("Cluster: %v", err)
	}
	return c
}

func (f *fixture) clusterRole() *rbacv1.ClusterRole {
	f.t.Helper()
	r, err := f.member.RbacV1().ClusterRoles().Get(context.Background(), ClusterRoleName, metav1.GetOptions{})
	if err != nil {
		f.t.Fatalf("ClusterRole: %v", err)
	}
	return r
}

func (f *fixture) binding() *rbacv1.ClusterRoleBinding {
	f.t.Helper()
	b, err := f.member.RbacV1().ClusterRoleBindings().Get(context.Background(), ClusterRoleName, metav1.GetOptions{})
	if err != nil {
		f.t.Fatalf("ClusterRoleBinding: %v", err)
	}
	return b
}

// Objects as an administrator (or an earlier join) leaves them.

// memberObjects are the member objects join declares, as join leaves
// them, but the token Secret.
func memberObjects() (*corev1.Namespace, *corev1.ServiceAccount, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding) {
	objs := objects(declaration{name: testName, endpoint: memberHost})
	return as[corev1.Namespace](objs[0]), as[corev1.ServiceAccount](objs[1]), as[rbacv1.ClusterRole](objs[2]), as[rbacv1.ClusterRoleBinding](objs[3])
}

// tokenSecretObject is the token Secret join declares, before the API
// server names it.
func tokenSecretObject() *corev1.Secret {
	return as[corev1.Secret](objects(declaration{name: testName, endpoint: memberHost})[4])
}

// as is a declared object as the typed object T.
func as[T any](obj object) *T {
	out := new(T)
	if err := convert(obj.config, out); err != nil {
		panic(err)
	}
	return out
}

func managedMeta(name, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{ManagedByLabel: ManagedByValue}}
}

// wantRules are the rules of switchboard's ClusterRole: impersonation and
// nothing else.
var wantRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"users", "groups", "serviceaccounts"}, Verbs: []string{"impersonate"}},
	{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"*"}, Verbs: []string{"impersonate"}},
}

func unlabelled[T metav1.Object](obj T) T {
	obj.SetLabels(nil)
	return obj
}

func terminating[T metav1.Object](obj T) T {
	now := metav1.Now()
	obj.SetDeletionTimestamp(&now)
	obj.SetFinalizers([]string{"kubernetes"})
	return obj
}

// Assertions.

func changeStrings(changes []Change) []string {
	out := make([]string, len(changes))
	for i, c := range changes {
		out[i] = c.String()
	}
	return out
}

func assertChanges(t *testing.T, got []Change, want ...string) {
	t.Helper()
	g := changeStrings(got)
	if strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes:\n  got:  %q\n  want: %q", g, want)
	}
}

func assertNoWrites(t *testing.T, f *fixture) {
	t.Helper()
	if w := f.memberWrites(); len(w) > 0 {
		t.Errorf("writes in the member: %q", w)
	}
	if w := f.hubWrites(); len(w) > 0 {
		t.Errorf("writes on the hub: %q", w)
	}
}

func assertWrites(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("writes:\n  got:  %q\n  want: %q", got, want)
	}
}

func assertManaged(t *testing.T, obj metav1.Object) {
	t.Helper()
	if !isManaged(obj) {
		t.Errorf("%s has labels %v, want %s=%s", obj.GetName(), obj.GetLabels(), ManagedByLabel, ManagedByValue)
	}
}

func assertErrorContains(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}
