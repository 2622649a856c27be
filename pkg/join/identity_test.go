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
	"reflect"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/identity"
)

// join writes the identity policy it is given into the Cluster, and a
// later join that gives none keeps it, even when that join changes
// something else of the Cluster (which server-side apply would otherwise
// take as dropping the fields join owned).
func TestJoinWritesAndKeepsTheIdentityPolicy(t *testing.T) {
	policy, err := identity.Preset{RefuseHubAdmins: true, Prefix: "hub:"}.Policy()
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	o := f.options()
	o.Identity = policy
	if _, err := f.joinWith(o); err != nil {
		t.Fatal(err)
	}
	want := &v1alpha1.IdentityPolicy{
		Rules:    []v1alpha1.IdentityRule{{Expression: identity.RefuseHubAdminsRule.Expression, Message: identity.RefuseHubAdminsRule.Message}},
		Username: `"hub:" + user.username`,
		Groups:   `user.groups.map(g, "hub:" + g)`,
	}
	if got := f.cluster().Spec.Identity; !reflect.DeepEqual(got, want) {
		t.Fatalf("identity = %+v, want %+v", got, want)
	}

	// Again without a policy, re-pointed: the policy stays.
	o = f.options()
	o.Endpoint, o.Overwrite = "https://member.example:7443", true
	if _, err := f.joinWith(o); err != nil {
		t.Fatal(err)
	}
	if got := f.cluster(); !reflect.DeepEqual(got.Spec.Identity, want) || got.Spec.Endpoint != o.Endpoint {
		t.Errorf("after a join without a policy: endpoint %s, identity %+v; want %s, %+v", got.Spec.Endpoint, got.Spec.Identity, o.Endpoint, want)
	}

	// A policy that does not compile stops join before anything changes.
	f.clearActions()
	o = f.options()
	o.Identity = &identity.Policy{Username: "user.name"}
	_, err = f.joinWith(o)
	assertErrorContains(t, err, "the identity policy is not valid", "spec.identity.username")
	assertNoWrites(t, f)
}

// When the Cluster's identity policy refuses whoever runs join, join
// checks the member through switchboard's own probe instead.
func TestJoinVerifiesByProbeWhenThePolicyRefusesTheCaller(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.verifyErr = apierrors.NewForbidden(schema.GroupResource{Group: v1alpha1.GroupName, Resource: "clusters/proxy"}, testName,
		errors.New(`cluster "prod": `+identity.RefusalMessage+"refuses the caller: rule 0 (...): no hub administrators"))
	o := f.options()
	o.VerifyTimeout = 3 * time.Second
	o.verify = func(context.Context) (string, error) { return "", f.verifyErr }

	// Not Ready: join fails, and says both.
	_, err := f.joinWith(o)
	assertErrorContains(t, err, "no hub administrators", "no probe switchboard made of the member since join's changes has succeeded")

	// Ready, but from a probe before join's writes: join fails.
	stop := markReady(ctx, f, -time.Hour)
	_, err = f.joinWith(o)
	stop()
	assertErrorContains(t, err, "no probe switchboard made of the member since join's changes has succeeded")

	// Ready from a probe after them: the probe stands in for the caller's
	// request.
	defer markReady(ctx, f, time.Second)()
	res, err := f.joinWith(o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Verified, "identity policy refuses you") || !strings.Contains(res.Verified, "switchboard's own probe reaches the member: Ready, Kubernetes v1.37.2") {
		t.Errorf("Verified = %q", res.Verified)
	}
}

// markReady keeps marking Cluster prod Ready, probed at now+offset, until
// the returned stop is called.
func markReady(ctx context.Context, f *fixture, offset time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			cl, err := f.sb.ClusterV1alpha1().Clusters().Get(ctx, testName, metav1.GetOptions{})
			if err != nil {
				return false, nil //nolint:nilerr // not written yet, or gone with a rollback: try again.
			}
			probed := metav1.NewTime(time.Now().Add(offset))
			cl.Status.KubernetesVersion, cl.Status.LastProbeTime = "v1.37.2", &probed
			cl.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonProbed,
				ObservedGeneration: cl.Generation, LastTransitionTime: metav1.Now()}}
			_, _ = f.sb.ClusterV1alpha1().Clusters().UpdateStatus(ctx, cl, metav1.UpdateOptions{})
			return false, nil
		})
	}()
	return func() { cancel(); <-done }
}
