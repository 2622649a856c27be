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

package fleet

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/switchboard-io/switchboard/pkg/kubeconfig"
)

// The selector that kubectl switchboard kubeconfig --fleet writes into a
// server URL comes back whole, as the hub and switchboard read the path,
// prefixed label keys and set-based selectors included.
func TestSelectorThroughAKubeconfigURL(t *testing.T) {
	for _, selector := range []string{"", "env=prod", "env=prod,tier!=db", "topology.kubernetes.io/region in (eu-1, eu-2)", "!legacy", "example.com/team=a"} {
		t.Run(selector, func(t *testing.T) {
			server, err := url.Parse("https://hub.example:6443/prefix" + kubeconfig.FleetPath(selector))
			if err != nil {
				t.Fatal(err)
			}
			// client-go appends the member path to the server's path and
			// sends it escaped; the hub and switchboard split the decoded
			// path on "/".
			sent, err := url.Parse(server.String() + "/api/v1/pods")
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(strings.TrimPrefix(sent.Path, "/prefix/apis/cluster.switchboard.io/v1alpha1/"), "/")
			if len(parts) < 4 || parts[0] != Resource || parts[2] != Subresource {
				t.Fatalf("the path %q does not split into fleets/<name>/proxy/...", sent.Path)
			}
			got, err := ParseSelector(parts[1])
			if err != nil {
				t.Fatal(err)
			}
			want, _ := labels.Parse(selector)
			if got.String() != want.String() {
				t.Errorf("selector %q came back as %q", want, got)
			}
		})
	}
}

func TestBadSelectors(t *testing.T) {
	for _, name := range []string{"env in (a", "%zz", " ", "a=b=c"} {
		_, err := ParseSelector(name)
		if status, ok := err.(apierrors.APIStatus); !ok || status.Status().Code != http.StatusBadRequest || !strings.Contains(err.Error(), "label selector") {
			t.Errorf("ParseSelector(%q): %v, want a 400 that says what a fleet name is", name, err)
		}
	}
	if s, err := ParseSelector(All); err != nil || !s.Empty() {
		t.Errorf("ParseSelector(%q) = %v, %v; want every Cluster", All, s, err)
	}
}
