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
	"reflect"
	"testing"

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
