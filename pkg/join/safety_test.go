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
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// What join must never do to other Clusters, and what it checks before its
// first write.

func TestJoinRefusesToRepointWithoutOverwrite(t *testing.T) {
	f := joined(t)
	before := f.cluster().Spec
	o := f.options()
	o.MemberConfig = &rest.Config{Host: "https://other-member.example:6443"}
	_, err := f.joinWith(o)
	assertErrorContains(t, err, "Cluster prod on the hub already points at "+memberHost,
		"would point it at https://other-member.example:6443", "--overwrite")
	assertNoWrites(t, f)
	if got := f.cluster().Spec; got != before {
		t.Errorf("Cluster spec %+v, want %+v", got, before)
	}

	o.Overwrite = true
	res, err := f.joinWith(o)
	if err != nil {
		t.Fatalf("Join --overwrite: %v", err)
	}
	if got := f.cluster().Spec.Endpoint; got != "https://other-member.example:6443" {
		t.Errorf("endpoint after --overwrite %q", got)
	}
	if !strings.Contains(strings.Join(changeStrings(res.Changes), "\n"), "corrected Cluster prod") {
		t.Errorf("changes %q", changeStrings(res.Changes))
	}
}

// Switchboard writes Cluster status all the time, and others may write the
// hub Secret, between join's read and its write. Join's applies carry no
// resourceVersion, so those writes cannot make it conflict (the fakes do
// not check one: the test looks at what join sends), and what they wrote
// stays.
func TestJoinDoesNotConflictWithOtherWriters(t *testing.T) {
	f := joined(t)
	ctx := context.Background()
	writesBefore := 0
	var preconditions []string
	for _, c := range []*k8stesting.Fake{&f.hub.Fake, &f.sb.Fake} {
		c.PrependReactor("patch", "*", func(action k8stesting.Action) (bool, runtime.Object, error) {
			if patch := string(action.(k8stesting.PatchAction).GetPatch()); strings.Contains(patch, "resourceVersion") {
				preconditions = append(preconditions, patch)
			}
			return false, nil, nil
		})
	}
	// The reactors hold the fake's lock: they write to the trackers.
	clustersGVR := v1alpha1.SchemeGroupVersion.WithResource("clusters")
	f.sb.PrependReactor("patch", "clusters", func(action k8stesting.Action) (bool, runtime.Object, error) {
		obj, err := f.clusters.Get(clustersGVR, "", testName)
		if err != nil {
			return true, nil, err
		}
		c := obj.(*v1alpha1.Cluster).DeepCopy()
		c.Status.KubernetesVersion = "v1.37.2"
		if err := f.clusters.Update(clustersGVR, c, "", metav1.UpdateOptions{FieldManager: "switchboard-apiserver"}); err != nil {
			return true, nil, err
		}
		writesBefore++
		return false, nil, nil
	})
	f.hub.PrependReactor("patch", "secrets", func(action k8stesting.Action) (bool, runtime.Object, error) {
		obj, err := f.hub.Tracker().Get(secretsGVR, DefaultHubNamespace, SecretName(testName))
		if err != nil {
			return true, nil, err
		}
		s := obj.(*corev1.Secret).DeepCopy()
		s.Annotations = map[string]string{"note": "an administrator's"}
		if err := f.hub.Tracker().Update(secretsGVR, s, DefaultHubNamespace, metav1.UpdateOptions{FieldManager: "kubectl-annotate"}); err != nil {
			return true, nil, err
		}
		writesBefore++
		return false, nil, nil
	})
	o := f.options()
	o.Endpoint = "https://moved.example:6443"
	o.Overwrite = true
	o.MemberConfig = &rest.Config{Host: memberHost, TLSClientConfig: rest.TLSClientConfig{CAData: []byte("a new CA")}}
	if _, err := f.joinWith(o); err != nil {
		t.Fatalf("Join with other writers: %v", err)
	}
	if writesBefore != 2 {
		t.Errorf("%d writes by others just before join's, want 2", writesBefore)
	}
	if len(preconditions) > 0 {
		t.Errorf("join sent a resourceVersion, which a concurrent write makes conflict: %q", preconditions)
	}
	c := f.cluster()
	if c.Spec.Endpoint != "https://moved.example:6443" || c.Status.KubernetesVersion != "v1.37.2" {
		t.Errorf("Cluster endpoint %q, status %+v", c.Spec.Endpoint, c.Status)
	}
	s, err := f.hub.CoreV1().Secrets(DefaultHubNamespace).Get(ctx, SecretName(testName), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Data[v1alpha1.SecretKeyCABundle]) != "a new CA" || s.Annotations["note"] != "an administrator's" {
		t.Errorf("hub Secret CA %q, annotations %v", s.Data[v1alpha1.SecretKeyCABundle], s.Annotations)
	}
}

// The Secret is corrected, then the Cluster cannot be: the Secret goes back
// to what it was, so the Cluster never meets a credential of another member.
func TestJoinPutsTheSecretBackWhenTheClusterFails(t *testing.T) {
	f := joined(t)
	beforeData := f.hubSecret(DefaultHubNamespace).Data
	f.sb.PrependReactor("patch", "clusters", func(action k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errors.New("etcd is down"))
	})
	o := f.options()
	o.Endpoint = "https://moved.example:6443"
	o.Overwrite = true
	o.MemberConfig = &rest.Config{Host: memberHost, TLSClientConfig: rest.TLSClientConfig{CAData: []byte("a new CA")}}
	_, err := f.joinWith(o)
	assertErrorContains(t, err, "correcting Cluster prod on the hub", "etcd is down")
	var joinErr *Error
	if !errors.As(err, &joinErr) || joinErr.RollbackErr != nil {
		t.Fatalf("error %#v, want a *join.Error with a complete rollback", err)
	}
	assertChanges(t, joinErr.RolledBack, "restored Secret switchboard-system/prod-credentials on the hub")
	if got := f.hubSecret(DefaultHubNamespace).Data; string(got[v1alpha1.SecretKeyCABundle]) != string(beforeData[v1alpha1.SecretKeyCABundle]) {
		t.Errorf("hub Secret CA after the rollback %q, want %q", got[v1alpha1.SecretKeyCABundle], beforeData[v1alpha1.SecretKeyCABundle])
	}
}

// A Cluster made by hand is refused before join writes anything, in the
// member or on the hub.
func TestJoinRefusesAHandMadeClusterBeforeAnyWrite(t *testing.T) {
	f := newFixture(t)
	handMade := &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: testName},
		Spec:       v1alpha1.ClusterSpec{Endpoint: memberHost, CredentialsSecretRef: v1alpha1.SecretReference{Name: "admins-secret"}},
	}
	if err := f.clusters.Add(handMade); err != nil {
		t.Fatal(err)
	}
	_, err := f.join()
	assertErrorContains(t, err, "Cluster prod on the hub exists but is not managed by switchboard")
	assertNoWrites(t, f)
}

func TestJoinRefusesAnEndpointThatIsNotAnHTTPSURL(t *testing.T) {
	for endpoint, want := range map[string]string{
		"127.0.0.1:38251":       "must be a URL with a scheme, such as https://127.0.0.1:38251",
		"http://127.0.0.1:6443": "must use the https scheme",
	} {
		t.Run(endpoint, func(t *testing.T) {
			f := newFixture(t)
			o := f.options()
			o.Endpoint = endpoint
			_, err := f.joinWith(o)
			assertErrorContains(t, err, "the member endpoint", want)
			assertNoWrites(t, f)
		})
	}
}

func TestJoinWarnsWhenTheMemberIsTheHub(t *testing.T) {
	kubeSystem := func(uid string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metav1.NamespaceSystem, UID: types.UID(uid)}}
	}
	for _, tc := range []struct {
		name       string
		member     string
		hub        string
		wantWarned bool
	}{
		{"the same cluster", "0b4c", "0b4c", true},
		{"two clusters", "0b4c", "77aa", false},
		{"a kube-system it cannot read", "", "77aa", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var memberObjects []runtime.Object
			if tc.member != "" {
				memberObjects = append(memberObjects, kubeSystem(tc.member))
			}
			f := newFixture(t, memberObjects...)
			if err := f.hub.Tracker().Add(kubeSystem(tc.hub)); err != nil {
				t.Fatal(err)
			}
			res := f.mustJoin()
			warned := len(res.Warnings) == 1 && strings.Contains(res.Warnings[0], "reaches the hub itself") &&
				strings.Contains(res.Warnings[0], tc.member)
			if warned != tc.wantWarned || (!tc.wantWarned && len(res.Warnings) > 0) {
				t.Errorf("warnings %q, want a warning: %v", res.Warnings, tc.wantWarned)
			}
		})
	}
}

// A server dry run sends every write with dryRun=All and stores nothing; it
// does not wait for a token nor check through the hub. Into a namespace
// it only pretended to create, it sends nothing.
func TestJoinServerDryRun(t *testing.T) {
	const notSent = " (server dry run): not sent, as its namespace does not exist yet"
	const guardWrites = "create validatingadmissionpolicies,create validatingadmissionpolicybindings,"
	for _, tc := range []struct {
		name        string
		member      []runtime.Object
		wantWrites  string
		wantChanges []string
	}{{
		name:       "the namespace exists",
		member:     []runtime.Object{managedNamespace()},
		wantWrites: guardWrites + "create serviceaccounts,create clusterroles,create clusterrolebindings,create secrets,create secrets,create clusters",
		wantChanges: []string{
			"created ValidatingAdmissionPolicy " + GuardName + " (server dry run)",
			"created ValidatingAdmissionPolicyBinding " + GuardName + " (server dry run)",
			"unchanged Namespace switchboard-system",
			"created ServiceAccount switchboard-system/switchboard-impersonator (server dry run)",
			"created ClusterRole switchboard:impersonator (server dry run)",
			"created ClusterRoleBinding switchboard:impersonator (server dry run)",
			"created Secret switchboard-system/" + TokenSecretPrefix + "* (server dry run)",
			"created Secret switchboard-system/prod-credentials (server dry run)",
			"created Cluster prod (server dry run)",
		},
	}, {
		name:       "a new member",
		wantWrites: guardWrites + "create namespaces,create clusterroles,create clusterrolebindings,create secrets,create clusters",
		wantChanges: []string{
			"created ValidatingAdmissionPolicy " + GuardName + " (server dry run)",
			"created ValidatingAdmissionPolicyBinding " + GuardName + " (server dry run)",
			"created Namespace switchboard-system (server dry run)",
			"created ServiceAccount switchboard-system/switchboard-impersonator" + notSent,
			"created ClusterRole switchboard:impersonator (server dry run)",
			"created ClusterRoleBinding switchboard:impersonator (server dry run)",
			"created Secret switchboard-system/" + TokenSecretPrefix + "*" + notSent,
			"created Secret switchboard-system/prod-credentials (server dry run)",
			"created Cluster prod (server dry run)",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) { testJoinServerDryRun(t, tc.member, tc.wantWrites, tc.wantChanges) })
	}
}

func testJoinServerDryRun(t *testing.T, member []runtime.Object, wantWrites string, wantChanges []string) {
	f := newFixture(t, member...)
	dryRuns, wet := f.answerDryRuns()
	f.verifyErr = errors.New("a dry run must not check through the hub")
	o := f.options()
	o.DryRun = DryRunServer
	res, err := f.joinWith(o)
	if err != nil {
		t.Fatalf("Join --dry-run=server: %v", err)
	}
	if len(*wet) > 0 {
		t.Errorf("writes without dryRun=All: %q", *wet)
	}
	if got := strings.Join(*dryRuns, ","); got != wantWrites {
		t.Errorf("dry-run writes %s, want %s", got, wantWrites)
	}
	assertChanges(t, res.Changes, wantChanges...)
	if _, err := f.sb.ClusterV1alpha1().Clusters().Get(context.Background(), testName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the Cluster was stored by a dry run: %v", err)
	}
}

// A binding whose role reference is wrong is replaced; when the new one
// cannot be created, the old one comes back, and the user is told.
func TestJoinPutsTheOldBindingBackWhenTheReplacementFails(t *testing.T) {
	ctx := context.Background()
	f := joined(t)
	b := f.binding()
	b.RoleRef.Name = "cluster-admin"
	replaceIn(t, f.member.Tracker(), rbacv1.SchemeGroupVersion.WithResource("clusterrolebindings"), b)
	creates := 0
	f.member.PrependReactor("create", "clusterrolebindings", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if creates++; creates == 1 {
			return true, nil, apierrors.NewInternalError(errors.New("etcd is down"))
		}
		return false, nil, nil
	})
	_, err := f.join()
	assertErrorContains(t, err, "replacing ClusterRoleBinding switchboard:impersonator", "etcd is down", "the old binding is back")
	back, getErr := f.member.RbacV1().ClusterRoleBindings().Get(ctx, ClusterRoleName, metav1.GetOptions{})
	if getErr != nil || back.RoleRef.Name != "cluster-admin" {
		t.Errorf("the binding after a failed replacement: %+v, %v", back, getErr)
	}
}

// A create whose outcome is unknown (the connection broke after the server
// stored it) is undone too.
func TestJoinUndoesACreateWhoseOutcomeIsUnknown(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.sb.PrependReactor("create", "clusters", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if _, _, err := k8stesting.ObjectReaction(f.clusters)(action); err != nil {
			return true, nil, err
		}
		return true, nil, errors.New("http2: client connection lost")
	})
	_, err := f.join()
	var joinErr *Error
	if !errors.As(err, &joinErr) || joinErr.RollbackErr != nil {
		t.Fatalf("error %#v, want a *join.Error with a complete rollback", err)
	}
	if _, err := f.sb.ClusterV1alpha1().Clusters().Get(ctx, testName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the Cluster whose create lost its answer is still there: %v", err)
	}
	if !strings.Contains(strings.Join(changeStrings(joinErr.RolledBack), "\n"), "deleted Cluster prod") {
		t.Errorf("rolled back %q", changeStrings(joinErr.RolledBack))
	}
}

// A token that replaced a broken one is a repair: a later failure keeps it,
// and says so.
func TestJoinKeepsARepairedTokenOnRollback(t *testing.T) {
	f := joined(t)
	broken := f.tokenSecret().Name
	f.checkToken = func(context.Context, []byte) error { return apierrors.NewUnauthorized("token expired") }
	f.verifyErr = errors.New("unreachable")
	_, err := f.join()
	f.checkToken = nil
	var joinErr *Error
	if !errors.As(err, &joinErr) || joinErr.RollbackErr != nil {
		t.Fatalf("error %#v, want a *join.Error with a complete rollback", err)
	}
	fresh := f.tokenSecret()
	if fresh == nil || fresh.Name == broken {
		t.Fatalf("token Secret after the rollback %+v, want the new one", fresh)
	}
	assertChanges(t, joinErr.Repaired,
		"deleted Secret switchboard-system/"+broken+", whose token no longer worked",
		"created Secret switchboard-system/"+fresh.Name+" in its place")
	assertChanges(t, joinErr.RolledBack, "restored Secret switchboard-system/prod-credentials on the hub")
}

func TestJoinRefusesAClientDryRun(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	o.DryRun = DryRunClient
	_, err := f.joinWith(o)
	assertErrorContains(t, err, "client dry run")
	assertNoWrites(t, f)
}

func TestJoinTakesTheSameEndpointWrittenAnotherWay(t *testing.T) {
	f := joined(t)
	o := f.options()
	o.Endpoint = "https://MEMBER.example:6443/"
	if _, err := f.joinWith(o); err != nil {
		t.Errorf("join with %s after %s: %v", o.Endpoint, memberHost, err)
	}
}

// Cancelled during the check through the hub (Ctrl-C), join still puts
// back what it made.
func TestJoinRollsBackWhenCancelled(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	o := f.options()
	o.verify = func(ctx context.Context) (string, error) {
		cancel()
		<-ctx.Done()
		return "", ctx.Err()
	}
	_, err := Join(ctx, o)
	var joinErr *Error
	if !errors.As(err, &joinErr) || joinErr.RollbackErr != nil || len(joinErr.RolledBack) != 9 {
		t.Fatalf("error %#v, want a *join.Error that rolled back all 9 objects", err)
	}
	if _, err := f.sb.ClusterV1alpha1().Clusters().Get(context.Background(), testName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Cluster after a cancelled join: %v", err)
	}
}

// Unjoin with the kubeconfig of another member than the Cluster uses keeps
// that member's identity.
func TestUnjoinWithTheWrongMemberKeepsItsIdentity(t *testing.T) {
	f := joined(t)
	secret := f.hubSecret(DefaultHubNamespace)
	secret.Data[v1alpha1.SecretKeyToken] = []byte("a token of another member")
	if _, err := f.hub.CoreV1().Secrets(DefaultHubNamespace).Update(context.Background(), secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.clearActions()
	changes, err := Unjoin(context.Background(), f.unjoinOptions(true))
	if err != nil {
		t.Fatal(err)
	}
	assertChanges(t, changes,
		"deleted Cluster prod",
		"deleted Secret switchboard-system/prod-credentials on the hub",
		"kept the member's switchboard objects (switchboard-system, switchboard-impersonator, switchboard:impersonator): "+
			"Cluster prod on the hub uses no token of this member: is --member-kubeconfig the member it points at?")
	assertWrites(t, f.memberWrites())
}
