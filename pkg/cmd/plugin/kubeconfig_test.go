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
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned/fake"
	"github.com/switchboard-io/switchboard/pkg/kubeconfig"
)

func TestCheckClusterOnHub(t *testing.T) {
	clusters := schema.GroupResource{Group: v1alpha1.SchemeGroupVersion.Group, Resource: "clusters"}
	for _, tc := range []struct {
		name string
		// getErr, when set, is what GET clusters/NAME fails with.
		getErr  error
		lookup  string
		wantErr string
		warning string
	}{
		{name: "exists", lookup: "member1"},
		{name: "missing", lookup: "nosuch", wantErr: `cluster "nosuch" not found on the hub (kubectl get clusters.cluster.switchboard.io lists the clusters)`},
		{name: "forbidden", lookup: "member1", getErr: apierrors.NewForbidden(clusters, "member1", nil),
			warning: `Warning: could not check that cluster "member1" exists on the hub, writing the kubeconfig anyway:`},
		{name: "group not served", lookup: "member1", getErr: apierrors.NewNotFound(schema.GroupResource{}, ""),
			wantErr: "the hub does not serve clusters.cluster.switchboard.io; is switchboard installed?"},
		{name: "hub fails", lookup: "member1", getErr: apierrors.NewInternalError(os.ErrDeadlineExceeded),
			wantErr: `checking that cluster "member1" exists on the hub:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(&v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "member1"}})
			if tc.getErr != nil {
				client.PrependReactor("get", "clusters", func(clienttesting.Action) (bool, runtime.Object, error) {
					return true, nil, tc.getErr
				})
			}
			var warnings bytes.Buffer
			err := checkClusterOnHub(context.Background(), client.ClusterV1alpha1().Clusters(), tc.lookup, &warnings)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
			if tc.warning == "" && warnings.Len() > 0 || !strings.Contains(warnings.String(), tc.warning) {
				t.Errorf("warnings = %q, want %q", warnings.String(), tc.warning)
			}
		})
	}
}

func TestKubeconfigCommand(t *testing.T) {
	hub := newFakeHub(t)
	hub.addCluster("member1", metav1.ConditionTrue)

	t.Run("an existing cluster", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "member1.kubeconfig")
		_, stderr, err := hub.run("kubeconfig", "member1", "--output-file", path)
		if err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		config, err := clientcmd.LoadFromFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if server := config.Clusters[config.Contexts[config.CurrentContext].Cluster].Server; server != hub.server.URL+kubeconfig.ProxyPath("member1") {
			t.Errorf("server = %s", server)
		}
		if hub.hits("GET "+clustersPath+"/member1") != 1 {
			t.Error("the Cluster was not looked up on the hub")
		}
	})

	t.Run("the fleet", func(t *testing.T) {
		before := hub.hits("GET " + clustersPath)
		stdout, stderr, err := hub.run("kubeconfig", "--fleet", "--selector", "env=prod")
		if err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		config, err := clientcmd.Load([]byte(stdout))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(config.CurrentContext, "-fleet") {
			t.Errorf("context %q", config.CurrentContext)
		}
		if server := config.Clusters[config.Contexts[config.CurrentContext].Cluster].Server; server != hub.server.URL+"/apis/cluster.switchboard.io/v1alpha1/fleets/env=prod/proxy" {
			t.Errorf("server = %s", server)
		}
		if hub.hits("GET "+clustersPath) != before {
			t.Error("the fleet's kubeconfig looked up Clusters")
		}
		for _, args := range [][]string{{"--fleet", "member1"}, {"--fleet", "--selector", "env in (a"}, {"member1", "--selector", "env=prod"}} {
			if _, _, err := hub.run(append([]string{"kubeconfig"}, args...)...); err == nil {
				t.Errorf("kubeconfig %q: no error", args)
			}
		}
	})

	t.Run("a cluster that does not exist", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nosuch.kubeconfig")
		stdout, _, err := hub.run("kubeconfig", "nosuch", "--output-file", path)
		if err == nil || !strings.Contains(err.Error(), `cluster "nosuch" not found on the hub`) {
			t.Errorf("err = %v", err)
		}
		if _, statErr := os.Stat(path); !os.IsNotExist(statErr) || stdout != "" {
			t.Errorf("a kubeconfig was written (stat: %v, stdout %q)", statErr, stdout)
		}
		stdout, _, err = hub.run("kubeconfig", "nosuch")
		if err == nil || stdout != "" {
			t.Errorf("to standard output: err = %v, stdout %q", err, stdout)
		}
	})

	t.Run("an invalid name", func(t *testing.T) {
		before := hub.hits("GET " + clustersPath)
		_, _, err := hub.run("kubeconfig", "Member_1")
		if err == nil || !strings.Contains(err.Error(), `"Member_1" is not a valid cluster name`) {
			t.Errorf("err = %v", err)
		}
		if hub.hits("GET "+clustersPath) != before {
			t.Error("an invalid name was looked up")
		}
	})

	t.Run("no right to read Clusters", func(t *testing.T) {
		hub := newFakeHub(t)
		hub.forbidClusterGet = true
		stdout, stderr, err := hub.run("kubeconfig", "member1")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr, `Warning: could not check that cluster "member1" exists on the hub`) {
			t.Errorf("stderr = %q", stderr)
		}
		config, err := clientcmd.Load([]byte(stdout))
		if err != nil || len(config.Clusters) != 1 {
			t.Errorf("kubeconfig %v:\n%s", err, stdout)
		}
	})
}

func TestKubeconfigOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name, cluster string
		// wantErr starts the error Validate must report.
		wantErr string
	}{
		{name: "valid", cluster: "member1"},
		{name: "dotted", cluster: "member1.example"},
		{name: "uppercase and underscore", cluster: "Member_1", wantErr: `"Member_1" is not a valid cluster name: a lowercase RFC 1123 subdomain must consist of`},
		{name: "empty", cluster: "", wantErr: `"" is not a valid cluster name: `},
		{name: "254 characters", cluster: strings.Repeat("m", 254), wantErr: `"` + strings.Repeat("m", 254) + `" is not a valid cluster name: must be no more than 253 characters`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewKubeconfigOptions(testStreams())
			if err := o.Complete(hubFlags{}, nil, []string{tc.cluster}); err != nil || o.Name != tc.cluster {
				t.Fatalf("Complete: %v, name %q", err, o.Name)
			}
			err := o.Validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)) {
				t.Errorf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// The kubeconfig is made from the hub context --context names, else the
// current one, and its context is named <hub context>-NAME unless
// --context-name names it.
func TestKubeconfigRunContexts(t *testing.T) {
	hub := newFakeHub(t)
	hub.addCluster("member1", metav1.ConditionTrue)
	// Two hub contexts, for two users of the same hub.
	config := clientcmdapi.NewConfig()
	config.Clusters["hub"] = &clientcmdapi.Cluster{Server: hub.server.URL}
	config.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: "admin-token"}
	config.AuthInfos["alice"] = &clientcmdapi.AuthInfo{Token: "alice-token"}
	config.Contexts["hub-admin"] = &clientcmdapi.Context{Cluster: "hub", AuthInfo: "admin"}
	config.Contexts["hub-alice"] = &clientcmdapi.Context{Cluster: "hub", AuthInfo: "alice"}
	config.CurrentContext = "hub-admin"
	path := filepath.Join(t.TempDir(), "hub.kubeconfig")
	if err := clientcmd.WriteToFile(*config, path); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                    string
		hubContext, contextName string
		wantContext, wantToken  string
	}{
		{name: "current context", wantContext: "hub-admin-member1", wantToken: "admin-token"},
		{name: "--context", hubContext: "hub-alice", wantContext: "hub-alice-member1", wantToken: "alice-token"},
		{name: "--context-name", contextName: "member1", wantContext: "member1", wantToken: "admin-token"},
		{name: "both", hubContext: "hub-alice", contextName: "alice@member1", wantContext: "alice@member1", wantToken: "alice-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags := testHubFlags(t, path)
			flags.Context = &tc.hubContext
			var out, errOut bytes.Buffer
			o := NewKubeconfigOptions(genericiooptions.IOStreams{Out: &out, ErrOut: &errOut})
			o.ContextName = tc.contextName
			if err := o.Complete(flags, nil, []string{"member1"}); err != nil {
				t.Fatal(err)
			}
			if err := o.Run(context.Background()); err != nil {
				t.Fatalf("%v: %s", err, errOut.String())
			}
			member, err := clientcmd.Load(out.Bytes())
			if err != nil {
				t.Fatalf("%v:\n%s", err, out.String())
			}
			current := member.Contexts[member.CurrentContext]
			if member.CurrentContext != tc.wantContext || current == nil || len(member.Contexts) != 1 {
				t.Fatalf("contexts %v, current %q; want one, %q", member.Contexts, member.CurrentContext, tc.wantContext)
			}
			if server := member.Clusters[current.Cluster].Server; server != hub.server.URL+kubeconfig.ProxyPath("member1") {
				t.Errorf("server %s", server)
			}
			if token := member.AuthInfos[current.AuthInfo].Token; token != tc.wantToken {
				t.Errorf("token %q, want %q", token, tc.wantToken)
			}
		})
	}
}
