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
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/pkg/join"
	"github.com/switchboard-io/switchboard/test/e2e/framework"
)

// TestJoinNeverDamagesOtherClusters drives the real plugin through what a
// new user tries: a name joined again for another member, the same member
// under two names, an endpoint switchboard cannot reach, a Cluster made by
// hand, the hub as its own member, and unjoin's dry run. No other Cluster
// may suffer, and a failed join leaves nothing behind.
func TestJoinNeverDamagesOtherClusters(t *testing.T) {
	ctx := context.Background()
	clusters := f.Switchboard(t).ClusterV1alpha1().Clusters()
	secrets := f.Hub(t).CoreV1().Secrets(join.DefaultHubNamespace)
	member1, err := f.State.Member("member1")
	if err != nil {
		t.Fatal(err)
	}
	member2, err := f.State.Member("member2")
	if err != nil {
		t.Fatal(err)
	}
	member1Works := func(t *testing.T) {
		t.Helper()
		if code, body := rawThroughHub(t, proxyPrefix+"member1/proxy/version"); code != http.StatusOK {
			t.Errorf("member1 through the hub: %d %s", code, body)
		}
	}
	gone := func(t *testing.T, name string) {
		t.Helper()
		if _, err := clusters.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Cluster %s: %v, want it gone", name, err)
		}
		if _, err := secrets.Get(ctx, join.SecretName(name), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Secret %s: %v, want it gone", join.SecretName(name), err)
		}
	}

	t.Run("a name joined for one member is not re-pointed at another without --overwrite", func(t *testing.T) {
		t.Cleanup(func() { plugin(t, "unjoin", "member2b") })
		mustPlugin(t, "join", "member2b", "--member-kubeconfig", member2.Kubeconfig)
		r := plugin(t, "join", "member2b", "--member-kubeconfig", member1.Kubeconfig)
		if r.Err == nil || !strings.Contains(r.Stderr, "Cluster member2b on the hub already points at "+member2.URL) ||
			!strings.Contains(r.Stderr, "--overwrite") || !strings.Contains(r.Stderr, "Nothing was changed") {
			t.Fatalf("join over another member's name: err=%v\nstdout: %s\nstderr: %s", r.Err, r.Stdout, r.Stderr)
		}
		c, err := clusters.Get(ctx, "member2b", metav1.GetOptions{})
		if err != nil || c.Spec.Endpoint != member2.URL {
			t.Fatalf("member2b after the refused join: %+v, %v", c, err)
		}
		if code, body := rawThroughHub(t, proxyPrefix+"member2b/proxy/version"); code != http.StatusOK {
			t.Errorf("member2b after the refused join: %d %s", code, body)
		}

		// Asked for, with switchboard writing status all the while: no
		// conflict reaches the user, and the Cluster works at its new place.
		for i := 0; i < 3; i++ {
			kubeconfig := []string{member1.Kubeconfig, member2.Kubeconfig}[i%2]
			out := mustPlugin(t, "join", "member2b", "--member-kubeconfig", kubeconfig, "--overwrite")
			if !strings.Contains(out, `Cluster "member2b" is joined.`) || !strings.Contains(out, "Verified: GET") {
				t.Errorf("join --overwrite, round %d:\n%s", i, out)
			}
		}
		c, err = clusters.Get(ctx, "member2b", metav1.GetOptions{})
		if err != nil || c.Spec.Endpoint != member1.URL {
			t.Errorf("member2b after --overwrite: %+v, %v, want it at %s", c, err, member1.URL)
		}
	})

	t.Run("unjoining the same member under a second name keeps the identity the first uses", func(t *testing.T) {
		mustPlugin(t, "join", "member1b", "--member-kubeconfig", member1.Kubeconfig)
		r := plugin(t, "unjoin", "member1b", "--member-kubeconfig", member1.Kubeconfig, "--dry-run=client")
		if r.Err != nil || !strings.Contains(r.Stdout, "deleted Cluster member1b (dry run)") ||
			!strings.Contains(r.Stdout, "Cluster member1 on the hub still uses their token") || strings.Contains(r.Stdout, "deleted Namespace") {
			t.Errorf("unjoin --dry-run=client: err=%v\n%s%s", r.Err, r.Stdout, r.Stderr)
		}
		if _, err := clusters.Get(ctx, "member1b", metav1.GetOptions{}); err != nil {
			t.Errorf("the dry run deleted member1b: %v", err)
		}

		out := mustPlugin(t, "unjoin", "member1b", "--member-kubeconfig", member1.Kubeconfig)
		if !strings.Contains(out, "deleted Cluster member1b") || !strings.Contains(out, "kept the member's switchboard objects") ||
			!strings.Contains(out, "Cluster member1 on the hub still uses their token") || strings.Contains(out, "deleted ServiceAccount") {
			t.Errorf("unjoin of the second name:\n%s", out)
		}
		gone(t, "member1b")
		if _, err := f.Member(t, "member1").CoreV1().ServiceAccounts(join.Namespace).Get(ctx, join.ServiceAccountName, metav1.GetOptions{}); err != nil {
			t.Errorf("member1's impersonator: %v", err)
		}
		member1Works(t)
	})

	t.Run("an endpoint switchboard cannot reach fails fast and leaves nothing behind", func(t *testing.T) {
		start := time.Now()
		r := plugin(t, "join", "bad5", "--member-kubeconfig", member1.Kubeconfig, "--endpoint", "https://127.0.0.1:1")
		took := time.Since(start)
		t.Logf("join with an unreachable --endpoint failed after %s", took.Round(time.Millisecond))
		// Switchboard's own words: from its dial, or from its probe.
		if r.Err == nil || !strings.Contains(r.Stderr, `cluster "bad5" is unreachable`) || !strings.Contains(r.Stderr, "127.0.0.1:1") ||
			!strings.Contains(r.Stderr, "connection refused") || !strings.Contains(r.Stderr, "put back as it was") {
			t.Errorf("join with an unreachable endpoint: err=%v\nstdout: %s\nstderr: %s", r.Err, r.Stdout, r.Stderr)
		}
		if !strings.Contains(r.Stdout, `Joining cluster "bad5": member https://127.0.0.1:1 (set up through `+member1.URL+")") ||
			!strings.Contains(r.Stdout, "rolled back: deleted Cluster bad5") {
			t.Errorf("join's report:\n%s", r.Stdout)
		}
		gone(t, "bad5")
		member1Works(t)
	})

	t.Run("an endpoint without a scheme says what to write", func(t *testing.T) {
		r := plugin(t, "join", "noscheme", "--member-kubeconfig", member1.Kubeconfig, "--endpoint", "127.0.0.1:38251")
		if r.Err == nil || !strings.Contains(r.Stderr, "must be a URL with a scheme, such as https://127.0.0.1:38251") {
			t.Errorf("join with a schemeless endpoint: err=%v\n%s", r.Err, r.Stderr)
		}
		gone(t, "noscheme")
	})

	t.Run("a Cluster made by hand is refused before anything is written", func(t *testing.T) {
		manifest := filepath.Join(t.TempDir(), "handmade.yaml")
		if err := os.WriteFile(manifest, []byte(strings.ReplaceAll(clusterManifest, "NAME", "handmade")), 0o600); err != nil {
			t.Fatal(err)
		}
		framework.MustKubectl(t, f.State.Hub.Kubeconfig, "apply", "-f", manifest)
		t.Cleanup(func() { framework.Kubectl(t, f.State.Hub.Kubeconfig, "delete", "-f", manifest) })
		r := plugin(t, "join", "handmade", "--member-kubeconfig", member1.Kubeconfig)
		if r.Err == nil || !strings.Contains(r.Stderr, "Cluster handmade on the hub exists but is not managed by switchboard") {
			t.Errorf("join over a hand-made Cluster: err=%v\n%s", r.Err, r.Stderr)
		}
		if _, err := secrets.Get(ctx, join.SecretName("handmade"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the refused join made %s: %v", join.SecretName("handmade"), err)
		}
	})

	t.Run("the hub joined as its own member is warned about", func(t *testing.T) {
		r := plugin(t, "join", "hubself", "--member-kubeconfig", f.State.Hub.Kubeconfig, "--dry-run=server")
		if r.Err != nil || !strings.Contains(r.Stderr, "Warning: the member kubeconfig reaches the hub itself") ||
			!strings.Contains(r.Stdout, "(server dry run)") || !strings.Contains(r.Stdout, "nothing changed") {
			t.Errorf("join of the hub, server dry run: err=%v\nstdout: %s\nstderr: %s", r.Err, r.Stdout, r.Stderr)
		}
		gone(t, "hubself")
		r = plugin(t, "join", "member1", "--member-kubeconfig", member1.Kubeconfig)
		if strings.Contains(r.Stderr, "Warning:") {
			t.Errorf("a join of a real member warned: %s", r.Stderr)
		}
	})
}
