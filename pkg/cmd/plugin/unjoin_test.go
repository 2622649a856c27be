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
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func TestUnjoinOptionsComplete(t *testing.T) {
	member := memberKubeconfig(t, "m", "https://10.0.0.1:6443")
	nosuch := filepath.Join(t.TempDir(), "nosuch")
	for _, tc := range []struct {
		name string
		// hubKubeconfig is empty for the fake hub's.
		hubKubeconfig string
		args          []string
		wantMember    bool
		hubNamespace  string
		dryRun        dryRunStrategy
		wantErr       string
	}{
		{name: "the hub only", hubNamespace: "switchboard-system"},
		{name: "and the member", args: []string{"--member-kubeconfig", member}, wantMember: true, hubNamespace: "switchboard-system"},
		{name: "flags", args: []string{"--hub-namespace", "sb", "--dry-run=server"}, hubNamespace: "sb", dryRun: dryRunServer},
		{name: "no member kubeconfig", args: []string{"--member-kubeconfig", nosuch}, wantErr: "loading the member kubeconfig " + nosuch + ": "},
		{name: "no such member context", args: []string{"--member-kubeconfig", member, "--member-context", "nosuch"}, wantErr: `context "nosuch" does not exist`},
		{name: "no hub kubeconfig", hubKubeconfig: nosuch, wantErr: "loading the hub kubeconfig: "},
		// The hub's kubeconfig is read first.
		{name: "neither kubeconfig", hubKubeconfig: nosuch, args: []string{"--member-kubeconfig", nosuch}, wantErr: "loading the hub kubeconfig: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := newFakeHub(t).hubFlags()
			if tc.hubKubeconfig != "" {
				hub = testHubFlags(t, tc.hubKubeconfig)
			}
			o := NewUnjoinOptions(testStreams())
			cmd := newUnjoinCommand(hub, o)
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.Complete(hub, cmd, []string{"member1"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Name != "member1" || o.hubClient == nil || o.switchboard == nil || (o.memberClient != nil) != tc.wantMember ||
				o.HubNamespace != tc.hubNamespace || o.DryRun != tc.dryRun {
				t.Errorf("name %q, hub clients %v %v, member client %v, hub namespace %q, dry run %s", o.Name, o.hubClient != nil, o.switchboard != nil, o.memberClient != nil, o.HubNamespace, o.DryRun)
			}
			if err := o.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

func TestUnjoinRun(t *testing.T) {
	const secretPath = "/api/v1/namespaces/switchboard-system/secrets/member1-credentials"
	managed := map[string]string{"app.kubernetes.io/managed-by": "switchboard"}
	for _, tc := range []struct {
		name    string
		cluster string
		dryRun  dryRunStrategy
		// want is the last line printed; deletes says whether unjoin
		// sends deletes, and removed whether the hub then lacks the
		// Cluster and its Secret.
		want             string
		deletes, removed bool
	}{
		{name: "not joined", cluster: "nosuch", want: `Cluster "nosuch" is not joined; nothing to remove.`},
		{name: "joined", cluster: "member1", want: `Cluster "member1" is unjoined.`, deletes: true, removed: true},
		{name: "client dry run", cluster: "member1", dryRun: dryRunClient, want: `Cluster "member1" would be unjoined; nothing changed.`},
		{name: "server dry run", cluster: "member1", dryRun: dryRunServer, want: `Cluster "member1" would be unjoined; nothing changed.`, deletes: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := newFakeHub(t)
			hub.addCluster("member1", metav1.ConditionTrue)
			hub.clusters[0].Labels = managed
			hub.objects[secretPath] = map[string]any{
				"apiVersion": "v1", "kind": "Secret",
				"metadata": map[string]any{"name": "member1-credentials", "namespace": "switchboard-system", "labels": map[string]any{"app.kubernetes.io/managed-by": "switchboard"}},
			}
			var out, errOut bytes.Buffer
			o := NewUnjoinOptions(genericiooptions.IOStreams{Out: &out, ErrOut: &errOut})
			o.DryRun = tc.dryRun
			if err := o.Complete(hub.hubFlags(), nil, []string{tc.cluster}); err != nil {
				t.Fatal(err)
			}
			if err := o.Run(context.Background()); err != nil {
				t.Fatalf("%v\nstdout: %s\nstderr: %s", err, out.String(), errOut.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if lines[len(lines)-1] != tc.want {
				t.Errorf("output:\n%s\nwant it to end with %q", out.String(), tc.want)
			}
			if deletes := hub.hits("DELETE ") > 0; deletes != tc.deletes {
				t.Errorf("deletes sent: %v, want %v", deletes, tc.deletes)
			}
			_, secretKept := hub.objects[secretPath]
			if removed := len(hub.clusters) == 0 && !secretKept; removed != tc.removed {
				t.Errorf("removed: %v, want %v (%d clusters, secret kept %v)", removed, tc.removed, len(hub.clusters), secretKept)
			}
		})
	}
}
