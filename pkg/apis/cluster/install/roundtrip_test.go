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

package install

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/apitesting/roundtrip"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	runtimeserializer "k8s.io/apimachinery/pkg/runtime/serializer"

	"sigs.k8s.io/randfill"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// clusterFuzzing: every field of the internal and v1alpha1 types converts
// one to one, so the stock fillers (with apimachinery's own for metadata and
// conditions) cover them; only spec.connection is never empty, because
// decoding defaults an empty one to Direct.
func clusterFuzzing(runtimeserializer.CodecFactory) []any {
	return []any{
		func(s *cluster.ClusterSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.Connection == "" {
				s.Connection = cluster.ConnectionDirect
			}
		},
	}
}

// TestRoundTripTypes fills every type of the group with random values and
// checks that internal -> v1alpha1 -> JSON/CBOR -> internal loses nothing.
func TestRoundTripTypes(t *testing.T) {
	roundtrip.RoundTripTestForAPIGroup(t, Install, clusterFuzzing)
}

func TestInstallPrefersV1alpha1(t *testing.T) {
	scheme := runtime.NewScheme()
	Install(scheme)
	got := scheme.PrioritizedVersionsForGroup(v1alpha1.GroupName)
	want := []schema.GroupVersion{v1alpha1.SchemeGroupVersion}
	if len(got) != len(want) || got[0] != want[0] {
		t.Fatalf("prioritized versions = %v, want %v", got, want)
	}
	for _, kind := range []string{"Cluster", "ClusterList"} {
		if !scheme.Recognizes(v1alpha1.SchemeGroupVersion.WithKind(kind)) {
			t.Errorf("scheme does not recognize %s", kind)
		}
	}
}
