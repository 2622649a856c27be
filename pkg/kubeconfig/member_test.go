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

package kubeconfig

import (
	"strings"
	"testing"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func hubConfig(server string) *clientcmdapi.Config {
	c := clientcmdapi.NewConfig()
	c.Clusters["hub"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: []byte("CA")}
	c.AuthInfos["alice"] = &clientcmdapi.AuthInfo{Token: "alice-token"}
	c.AuthInfos["bob"] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "get-token"}}
	c.Contexts["hub-alice"] = &clientcmdapi.Context{Cluster: "hub", AuthInfo: "alice", Namespace: "team-a"}
	c.Contexts["hub-bob"] = &clientcmdapi.Context{Cluster: "hub", AuthInfo: "bob"}
	c.CurrentContext = "hub-alice"
	return c
}

func TestForMember(t *testing.T) {
	cases := []struct {
		name, server, hubContext, contextName string
		wantServer, wantContext, wantToken    string
	}{
		{"current context", "https://hub.example.com:6443", "", "", "https://hub.example.com:6443/apis/cluster.switchboard.io/v1alpha1/clusters/member1/proxy", "hub-alice-member1", "alice-token"},
		{"named context and context name", "https://hub.example.com", "hub-bob", "m1", "https://hub.example.com/apis/cluster.switchboard.io/v1alpha1/clusters/member1/proxy", "m1", ""},
		{"hub behind a path prefix", "https://gw.example.com/k8s/hub/", "", "", "https://gw.example.com/k8s/hub/apis/cluster.switchboard.io/v1alpha1/clusters/member1/proxy", "hub-alice-member1", "alice-token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hub := hubConfig(tc.server)
			out, err := ForMember(hub, tc.hubContext, "member1", tc.contextName)
			if err != nil {
				t.Fatal(err)
			}
			if out.CurrentContext != tc.wantContext || len(out.Contexts) != 1 || len(out.Clusters) != 1 || len(out.AuthInfos) != 1 {
				t.Fatalf("config = %+v", out)
			}
			ctx := out.Contexts[tc.wantContext]
			if got := out.Clusters[ctx.Cluster].Server; got != tc.wantServer {
				t.Errorf("server = %q, want %q", got, tc.wantServer)
			}
			if string(out.Clusters[ctx.Cluster].CertificateAuthorityData) != "CA" {
				t.Error("the hub's CA was not kept")
			}
			if got := out.AuthInfos[ctx.AuthInfo].Token; got != tc.wantToken {
				t.Errorf("token = %q, want %q: the hub credentials must be kept", got, tc.wantToken)
			}
			if hub.Clusters["hub"].Server != tc.server {
				t.Error("the hub kubeconfig was changed")
			}
		})
	}
}

func TestForMemberErrors(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(*clientcmdapi.Config)
		context string
		cluster string
		want    string
	}{
		{"bad cluster name", func(*clientcmdapi.Config) {}, "", "Member_1", "not a valid cluster name"},
		{"unknown context", func(*clientcmdapi.Config) {}, "nope", "member1", `no context "nope"`},
		{"no current context", func(c *clientcmdapi.Config) { c.CurrentContext = "" }, "", "member1", "no current context"},
		{"missing cluster", func(c *clientcmdapi.Config) { delete(c.Clusters, "hub") }, "", "member1", `cluster "hub"`},
		{"missing user", func(c *clientcmdapi.Config) { delete(c.AuthInfos, "alice") }, "", "member1", `user "alice"`},
		{"not a URL", func(c *clientcmdapi.Config) { c.Clusters["hub"].Server = "hub:6443" }, "", "member1", "is not a URL"},
		{"already a member", func(c *clientcmdapi.Config) {
			c.Clusters["hub"].Server = "https://hub" + ProxyPath("member2")
		}, "", "member1", "already points through switchboard"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hub := hubConfig("https://hub.example.com")
			tc.mutate(hub)
			_, err := ForMember(hub, tc.context, tc.cluster, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
