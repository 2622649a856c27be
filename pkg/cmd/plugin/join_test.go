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
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// memberKubeconfig writes a member kubeconfig with the contexts given, as
// context name -> server; the first is current. Every cluster skips TLS
// verification.
func memberKubeconfig(t *testing.T, contexts ...string) string {
	t.Helper()
	config := clientcmdapi.NewConfig()
	config.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: "member-token"}
	for i := 0; i+1 < len(contexts); i += 2 {
		name, server := contexts[i], contexts[i+1]
		config.Clusters[name] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
		config.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: "admin"}
		if i == 0 {
			config.CurrentContext = name
		}
	}
	path := filepath.Join(t.TempDir(), "member.kubeconfig")
	if err := clientcmd.WriteToFile(*config, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestJoinOptionsComplete(t *testing.T) {
	member := memberKubeconfig(t, "m1", "https://10.0.0.1:6443", "m2", "https://10.0.0.2:6443")
	// joinSettings are the options Complete settles on, and host the
	// server join sets the member up through.
	type joinSettings struct {
		endpoint, host, hubNamespace string
		tokenTimeout, verifyTimeout  time.Duration
		overwrite                    bool
		dryRun                       dryRunStrategy
	}
	defaults := func(endpoint, host string) joinSettings {
		return joinSettings{endpoint: endpoint, host: host, hubNamespace: "switchboard-system", tokenTimeout: time.Minute, verifyTimeout: time.Minute}
	}
	for _, tc := range []struct {
		name    string
		args    []string
		want    joinSettings
		wantErr string
	}{
		{name: "the kubeconfig's server", args: []string{"--member-kubeconfig", member},
			want: defaults("https://10.0.0.1:6443", "https://10.0.0.1:6443")},
		{name: "the server of --member-context", args: []string{"--member-kubeconfig", member, "--member-context", "m2"},
			want: defaults("https://10.0.0.2:6443", "https://10.0.0.2:6443")},
		{name: "--endpoint", args: []string{"--member-kubeconfig", member, "--endpoint", "https://member.example:6443"},
			want: defaults("https://member.example:6443", "https://10.0.0.1:6443")},
		// Complete does not check it: Validate does.
		{name: "a bad --endpoint", args: []string{"--member-kubeconfig", member, "--endpoint", "10.0.0.9:6443"},
			want: defaults("10.0.0.9:6443", "https://10.0.0.1:6443")},
		{name: "every flag", args: []string{"--member-kubeconfig", member, "--hub-namespace", "sb", "--token-timeout", "5s", "--verify-timeout", "7s", "--overwrite", "--dry-run=server"},
			want: joinSettings{endpoint: "https://10.0.0.1:6443", host: "https://10.0.0.1:6443", hubNamespace: "sb", tokenTimeout: 5 * time.Second, verifyTimeout: 7 * time.Second, overwrite: true, dryRun: dryRunServer}},
		{name: "no member kubeconfig", args: []string{"--member-kubeconfig", filepath.Join(t.TempDir(), "nosuch")},
			wantErr: "loading the member kubeconfig "},
		{name: "no such context", args: []string{"--member-kubeconfig", member, "--member-context", "nosuch"},
			wantErr: `loading the member kubeconfig ` + member + `: context "nosuch" does not exist`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// No hub: Complete reads none.
			hub := testHubFlags(t, filepath.Join(t.TempDir(), "nonexistent"))
			o := NewJoinOptions(testStreams())
			cmd := newJoinCommand(hub, o)
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
			got := joinSettings{o.Endpoint, o.memberConfig.Host, o.HubNamespace, o.TokenTimeout, o.VerifyTimeout, o.Overwrite, o.DryRun}
			if o.Name != "member1" || got != tc.want {
				t.Errorf("name %q, %+v; want member1, %+v", o.Name, got, tc.want)
			}
		})
	}
	t.Run("two names", func(t *testing.T) {
		o := NewJoinOptions(testStreams())
		o.Member.Kubeconfig = member
		if err := o.Complete(hubFlags{}, nil, []string{"a", "b"}); err == nil || err.Error() != "exactly one NAME is required, got 2" {
			t.Errorf("err = %v", err)
		}
	})
}

func TestJoinOptionsValidate(t *testing.T) {
	badName := `"Member_1" is not a valid cluster name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters`
	noScheme := `the member endpoint "10.0.0.1:6443" is not valid: must be a URL with a scheme, such as https://10.0.0.1:6443`
	for _, tc := range []struct {
		name, cluster, endpoint string
		// want are prefixes of the errors Validate must report, all of them.
		want []string
	}{
		{name: "valid", cluster: "member1", endpoint: "https://10.0.0.1:6443"},
		{name: "a dotted name", cluster: "member1.example", endpoint: "https://10.0.0.1:6443"},
		{name: "invalid name", cluster: "Member_1", endpoint: "https://10.0.0.1:6443", want: []string{badName}},
		{name: "name too long", cluster: strings.Repeat("a", 254), endpoint: "https://10.0.0.1:6443", want: []string{`"` + strings.Repeat("a", 254) + `" is not a valid cluster name: must be no more than 253 characters`}},
		{name: "endpoint without scheme", cluster: "member1", endpoint: "10.0.0.1:6443", want: []string{noScheme}},
		{name: "both", cluster: "Member_1", endpoint: "10.0.0.1:6443", want: []string{badName, noScheme}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewJoinOptions(testStreams())
			o.Name, o.Endpoint = tc.cluster, tc.endpoint
			checkAggregatePrefixes(t, o.Validate(), tc.want)
		})
	}
}

// A client dry run prints what join would apply and reaches neither the
// hub, which needs no kubeconfig, nor the member; any other run reads the
// hub's kubeconfig before it prints anything.
func TestJoinRunWithoutHub(t *testing.T) {
	// The member counts the requests it gets.
	var memberRequests atomic.Int32
	member := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		memberRequests.Add(1)
		w.WriteHeader(http.StatusForbidden)
	}))
	t.Cleanup(member.Close)
	memberKubeconfig := memberKubeconfig(t, "m", member.URL)
	for _, tc := range []struct {
		dryRun  dryRunStrategy
		want    []string
		wantErr string
	}{
		{dryRun: dryRunClient, want: []string{
			"# in the member cluster\napiVersion: v1\nkind: Namespace\n",
			"# in the hub cluster\napiVersion: v1\nkind: Secret\n",
			"  name: member1-credentials\n  namespace: other-namespace\n",
			"kind: Cluster\n",
			"  endpoint: https://member.example:6443\n",
			"  insecureSkipTLSVerify: true\n",
		}},
		{dryRun: dryRunServer, wantErr: "loading the hub kubeconfig: "},
		{dryRun: dryRunNone, wantErr: "loading the hub kubeconfig: "},
	} {
		t.Run(tc.dryRun.String(), func(t *testing.T) {
			var out, errOut bytes.Buffer
			o := NewJoinOptions(genericiooptions.IOStreams{Out: &out, ErrOut: &errOut})
			o.Member.Kubeconfig, o.Endpoint, o.HubNamespace, o.DryRun = memberKubeconfig, "https://member.example:6443", "other-namespace", tc.dryRun
			hub := testHubFlags(t, filepath.Join(t.TempDir(), "nonexistent"))
			if err := o.Complete(hub, nil, []string{"member1"}); err != nil {
				t.Fatal(err)
			}
			if err := o.Validate(); err != nil {
				t.Fatal(err)
			}
			err := o.Run(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) || out.Len() > 0 {
					t.Errorf("err = %v, want %q; stdout %q", err, tc.wantErr, out.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("%v: %s", err, errOut.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
			if n := memberRequests.Load(); n != 0 {
				t.Errorf("the member got %d requests", n)
			}
		})
	}
}

// checkAggregatePrefixes is checkAggregate for errors known by the start
// of their text.
func checkAggregatePrefixes(t *testing.T, err error, want []string) {
	t.Helper()
	got := errorTexts(err)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.HasPrefix(got[i], want[i])
	}
	if !ok {
		t.Errorf("errors %q, want ones that start with %q", got, want)
	}
}

// join --tunnel --dry-run=client prints the agent's objects too, with
// the flags' image and server count; an --agent-* flag without --tunnel,
// and bad agent flags, are refused before anything runs.
func TestJoinTunnelFlags(t *testing.T) {
	member := memberKubeconfig(t, "m", "https://10.0.0.1:6443")
	for _, tc := range []struct {
		name, cluster string
		args          []string
		want          []string
		wantErr       string
	}{
		{name: "client dry run", args: []string{"--tunnel", "--agent-image", "registry.example/sb:v1", "--agent-server-count", "3"}, want: []string{
			"  connection: Tunnel\n",
			"kind: Deployment\n",
			"image: registry.example/sb:v1\n",
			"- --server-count=3\n",
			"- --cluster=edge1\n",
			"  name: switchboard:agent:edge1\n",
			"  - clusters/attach\n",
		}},
		{name: "an agent flag without --tunnel", args: []string{"--agent-image", "registry.example/sb:v1"},
			wantErr: "--agent-image set(s) up the agent of a tunnelled member: add --tunnel"},
		{name: "no server", args: []string{"--tunnel", "--agent-server-count", "0"},
			wantErr: "--agent-server-count 0: the agent needs a tunnel to at least 1 switchboard replica"},
		{name: "hub server not https", args: []string{"--tunnel", "--agent-hub-server", "hub.example:6443"},
			wantErr: `--agent-hub-server "hub.example:6443" is not an https:// URL`},
		{name: "image with a space", args: []string{"--tunnel", "--agent-image", "a b"},
			wantErr: `--agent-image: "a b" is not a container image reference`},
		{name: "a name too long for the agent's ServiceAccount", cluster: strings.Repeat("a", 240), args: []string{"--tunnel"},
			wantErr: "cannot name a Cluster reached through a tunnel"},
		{name: "a short invalid name", cluster: "A", args: []string{"--tunnel"},
			wantErr: `"A" is not a valid cluster name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cluster := tc.cluster
			if cluster == "" {
				cluster = "edge1"
			}
			args := append([]string{"join", cluster, "--member-kubeconfig", member, "--dry-run=client"}, tc.args...)
			stdout, stderr, err := runPlugin(t, args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want %q; stdout %q", err, tc.wantErr, stdout)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v: %s", err, stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, stdout)
				}
			}
		})
	}
}

// The identity policy flags write spec.identity into the Cluster that
// join --dry-run=client prints; a bad prefix is refused.
func TestJoinIdentityFlags(t *testing.T) {
	member := memberKubeconfig(t, "m", "https://10.0.0.1:6443")
	stdout, stderr, err := runPlugin(t, "join", "member1", "--member-kubeconfig", member, "--dry-run=client",
		"--refuse-hub-admins", "--hub-prefix", "hub:", "--allow-hub-groups", "dev,ops")
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	for _, want := range []string{
		"  identity:\n",
		`- expression: '!(''system:masters'' in user.groups)'`,
		`groups: user.groups.filter(g, g in ["dev", "ops"]).map(g, "hub:" + g)`,
		`username: '"hub:" + user.username'`,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if _, _, err := runPlugin(t, "join", "member1", "--member-kubeconfig", member, "--dry-run=client", "--hub-prefix", " hub"); err == nil ||
		!strings.Contains(err.Error(), `the identity policy: prefix " hub": must be non-empty`) {
		t.Errorf("a prefix with a space: %v", err)
	}
}
