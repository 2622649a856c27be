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

package validation

import (
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
)

func validCluster() *cluster.Cluster {
	return &cluster.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "member1", ResourceVersion: "1"},
		Spec: cluster.ClusterSpec{
			Connection:           cluster.ConnectionDirect,
			Endpoint:             "https://10.0.0.12:6443",
			CredentialsSecretRef: cluster.SecretReference{Name: "member1-credentials"},
		},
	}
}

// fieldsOf returns "type field" for every error, sorted, so a case names
// exactly the errors it expects and no others.
func fieldsOf(errs field.ErrorList) []string {
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, string(e.Type)+" "+e.Field)
	}
	sort.Strings(out)
	return out
}

func TestValidateCluster(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*cluster.Cluster)
		want   []string
		// detail, when set, must appear in the error's detail.
		detail string
	}{
		{name: "valid", mutate: func(*cluster.Cluster) {}},
		{name: "valid with path prefix, hostname and every option", mutate: func(c *cluster.Cluster) {
			c.Spec.Endpoint = "https://rancher.example.com/k8s/clusters/c-abc12"
			c.Spec.TLSServerName = "kubernetes.default.svc"
			c.Spec.ProxyURL = "socks5://proxy.internal:1080"
		}},
		{name: "valid IPv6 endpoint and upper-case host", mutate: func(c *cluster.Cluster) {
			c.Spec.Endpoint = "https://[fd00::12]:6443"
			c.Spec.ProxyURL = "http://Proxy.Example.com:3128/"
			c.Spec.TLSServerName = "10.0.0.1"
		}},
		{name: "valid tunnel", mutate: func(c *cluster.Cluster) {
			c.Spec.Connection = cluster.ConnectionTunnel
			c.Spec.Endpoint = "https://kubernetes.default.svc"
			c.Spec.TLSServerName = "kubernetes"
		}},
		{name: "valid identity policy", mutate: func(c *cluster.Cluster) {
			c.Spec.Identity = &cluster.IdentityPolicy{
				Rules:    []cluster.IdentityRule{{Expression: "!('system:masters' in user.groups)", Message: "no hub administrators"}},
				Username: "'hub:' + user.username",
				Groups:   "user.groups.map(g, 'hub:' + g)",
				Extra:    []cluster.IdentityExtra{{Key: "hub.example.com/uid", ValueExpression: "user.uid"}},
			}
		}},
		{name: "identity policy that does not compile", mutate: func(c *cluster.Cluster) {
			c.Spec.Identity = &cluster.IdentityPolicy{
				Rules:    []cluster.IdentityRule{{Expression: "user.groups"}},
				Username: "user.name",
			}
		}, want: []string{"FieldValueInvalid spec.identity.rules[0].expression", "FieldValueInvalid spec.identity.username"}, detail: "undefined field 'name'"},
		{name: "tunnel with proxyURL", mutate: func(c *cluster.Cluster) {
			c.Spec.Connection = cluster.ConnectionTunnel
			c.Spec.ProxyURL = "http://proxy:3128"
		}, want: []string{"FieldValueForbidden spec.proxyURL"}, detail: "connection is Tunnel"},
		{name: "tunnel without TLS verification", mutate: func(c *cluster.Cluster) {
			c.Spec.Connection = cluster.ConnectionTunnel
			c.Spec.InsecureSkipTLSVerify = true
		}, want: []string{"FieldValueForbidden spec.insecureSkipTLSVerify"}, detail: "ca.crt"},
		{name: "unknown connection", mutate: func(c *cluster.Cluster) { c.Spec.Connection = "Carrier-Pigeon" },
			want: []string{"FieldValueNotSupported spec.connection"}, detail: `"Direct", "Tunnel"`},
		{name: "empty connection", mutate: func(c *cluster.Cluster) { c.Spec.Connection = "" },
			want: []string{"FieldValueNotSupported spec.connection"}},
		{name: "valid insecureSkipTLSVerify", mutate: func(c *cluster.Cluster) { c.Spec.InsecureSkipTLSVerify = true }},
		{name: "missing name", mutate: func(c *cluster.Cluster) { c.Name = "" },
			want: []string{"FieldValueRequired metadata.name"}},
		{name: "bad name", mutate: func(c *cluster.Cluster) { c.Name = "Member_1" },
			want: []string{"FieldValueInvalid metadata.name"}},
		{name: "namespace on a cluster-scoped object", mutate: func(c *cluster.Cluster) { c.Namespace = "default" },
			want: []string{"FieldValueForbidden metadata.namespace"}},
		{name: "missing endpoint", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "" },
			want: []string{"FieldValueRequired spec.endpoint"}},
		{name: "http endpoint", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "http://10.0.0.12:6443" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "https"},
		{name: "endpoint without scheme", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "10.0.0.12:6443" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "must be a URL with a scheme, such as https://10.0.0.12:6443"},
		{name: "host name endpoint without scheme", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "member.example:6443" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "such as https://member.example:6443"},
		{name: "endpoint without scheme, with user info", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "admin:secret@10.0.0.12:6443" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "such as https://host:6443"},
		{name: "proxy without scheme", mutate: func(c *cluster.Cluster) { c.Spec.ProxyURL = "proxy.internal:3128" },
			want: []string{"FieldValueInvalid spec.proxyURL"}, detail: "such as http://proxy.internal:3128"},
		{name: "endpoint without host", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "https:///api" },
			want: []string{"FieldValueInvalid spec.endpoint"}},
		{name: "endpoint with user info", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "https://admin:secret@10.0.0.12:6443" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "user info"},
		{name: "endpoint with query", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "https://10.0.0.12:6443/?timeout=1s" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "query"},
		{name: "endpoint with empty query", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "https://10.0.0.12:6443/?" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "query"},
		{name: "endpoint with fragment", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "https://10.0.0.12:6443#x" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "fragment"},
		{name: "endpoint with empty fragment", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "https://10.0.0.12:6443#" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "fragment"},
		{name: "endpoint with port out of range", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "https://10.0.0.12:70000" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "port"},
		{name: "endpoint with port zero", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "https://10.0.0.12:0" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "port"},
		{name: "endpoint with empty port", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "https://10.0.0.12:" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "port"},
		{name: "endpoint with non-numeric port", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "https://10.0.0.12:https" },
			want: []string{"FieldValueInvalid spec.endpoint"}},
		{name: "endpoint with bad host", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "https://bad_host:6443" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "host"},
		{name: "endpoint that is not a URL", mutate: func(c *cluster.Cluster) { c.Spec.Endpoint = "https://10.0.0.12:6443/%zz" },
			want: []string{"FieldValueInvalid spec.endpoint"}, detail: "valid URL"},
		{name: "missing secret name", mutate: func(c *cluster.Cluster) { c.Spec.CredentialsSecretRef.Name = "" },
			want: []string{"FieldValueRequired spec.credentialsSecretRef.name"}},
		{name: "bad secret name", mutate: func(c *cluster.Cluster) { c.Spec.CredentialsSecretRef.Name = "Not/A/Name" },
			want: []string{"FieldValueInvalid spec.credentialsSecretRef.name"}},
		{name: "bad tls server name", mutate: func(c *cluster.Cluster) { c.Spec.TLSServerName = "*.example.com" },
			want: []string{"FieldValueInvalid spec.tlsServerName"}},
		{name: "proxy with ftp scheme", mutate: func(c *cluster.Cluster) { c.Spec.ProxyURL = "ftp://proxy:21" },
			want: []string{"FieldValueInvalid spec.proxyURL"}, detail: "socks5"},
		{name: "proxy with credentials", mutate: func(c *cluster.Cluster) { c.Spec.ProxyURL = "http://user:pw@proxy:3128" },
			want: []string{"FieldValueInvalid spec.proxyURL"}, detail: "no credentials"},
		{name: "proxy with path", mutate: func(c *cluster.Cluster) { c.Spec.ProxyURL = "http://proxy:3128/x" },
			want: []string{"FieldValueInvalid spec.proxyURL"}, detail: "path"},
		{name: "proxy without host", mutate: func(c *cluster.Cluster) { c.Spec.ProxyURL = "socks5://" },
			want: []string{"FieldValueInvalid spec.proxyURL"}},
		{name: "every field wrong at once", mutate: func(c *cluster.Cluster) {
			c.Name = ""
			c.Spec = cluster.ClusterSpec{
				Endpoint:      "ftp://x:1?q#f",
				TLSServerName: "bad name",
				ProxyURL:      "gopher://p",
			}
		}, want: []string{
			"FieldValueInvalid spec.endpoint",
			"FieldValueInvalid spec.endpoint",
			"FieldValueInvalid spec.endpoint",
			"FieldValueInvalid spec.proxyURL",
			"FieldValueInvalid spec.tlsServerName",
			"FieldValueNotSupported spec.connection",
			"FieldValueRequired metadata.name",
			"FieldValueRequired spec.credentialsSecretRef.name",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validCluster()
			tc.mutate(c)
			errs := ValidateCluster(c)
			got := fieldsOf(errs)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("errors = %v\nwant %v\nfull: %v", got, tc.want, errs)
			}
			if tc.detail != "" && !strings.Contains(errs.ToAggregate().Error(), tc.detail) {
				t.Errorf("error %q does not mention %q", errs.ToAggregate().Error(), tc.detail)
			}
		})
	}
}

func TestValidationNeverEchoesPasswords(t *testing.T) {
	for _, value := range []string{
		"https://admin:hunter2@10.0.0.12:6443",
		"https://admin:hunter2@10.0.0.12:6443/%zz",
		"http://user:hunter2@proxy:3128",
		"admin:hunter2@10.0.0.12:6443",
	} {
		c := validCluster()
		if !strings.HasPrefix(value, "http:") {
			c.Spec.Endpoint = value
		} else {
			c.Spec.ProxyURL = value
		}
		errs := ValidateCluster(c)
		if len(errs) == 0 {
			t.Fatalf("%s: expected an error", value)
		}
		if msg := errs.ToAggregate().Error(); strings.Contains(msg, "hunter2") {
			t.Errorf("%s: error message leaks the password: %s", value, msg)
		}
	}
}

func TestValidateClusterUpdate(t *testing.T) {
	old := validCluster()

	moved := validCluster()
	moved.Spec.Endpoint = "https://10.0.0.99:6443"
	moved.Spec.CredentialsSecretRef.Name = "rotated"
	if errs := ValidateClusterUpdate(moved, old); len(errs) != 0 {
		t.Errorf("moving a member to a new endpoint and credential must be allowed: %v", errs)
	}

	renamed := validCluster()
	renamed.Name = "member2"
	if got := fieldsOf(ValidateClusterUpdate(renamed, old)); strings.Join(got, ",") != "FieldValueInvalid metadata.name" {
		t.Errorf("renaming: errors = %v", got)
	}

	broken := validCluster()
	broken.Spec.Endpoint = "http://x"
	if got := fieldsOf(ValidateClusterUpdate(broken, old)); strings.Join(got, ",") != "FieldValueInvalid spec.endpoint" {
		t.Errorf("invalid update: errors = %v", got)
	}
}

func TestValidateClusterStatusUpdate(t *testing.T) {
	old := validCluster()
	now := metav1.Now()

	good := validCluster()
	good.Status = cluster.ClusterStatus{
		Conditions: []metav1.Condition{{
			Type: "Ready", Status: metav1.ConditionTrue, Reason: "Probed", Message: "ok",
			LastTransitionTime: now, ObservedGeneration: 1,
		}},
		KubernetesVersion: "v1.37.2",
		LastProbeTime:     &now,
	}
	if errs := ValidateClusterStatusUpdate(good, old); len(errs) != 0 {
		t.Errorf("valid status rejected: %v", errs)
	}

	bad := validCluster()
	bad.Status = cluster.ClusterStatus{
		Conditions: []metav1.Condition{
			{Type: "Ready", Status: "Maybe", Reason: "Probed", LastTransitionTime: now},
			{Type: "Ready", Status: metav1.ConditionTrue, Reason: "", LastTransitionTime: now},
		},
		KubernetesVersion: strings.Repeat("v", maxKubernetesVersionLength+1),
	}
	got := fieldsOf(ValidateClusterStatusUpdate(bad, old))
	want := []string{
		"FieldValueDuplicate status.conditions[1]",
		"FieldValueNotSupported status.conditions[0].status",
		"FieldValueRequired status.conditions[1].reason",
		"FieldValueTooLong status.kubernetesVersion",
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("errors = %v\nwant %v", got, want)
	}
}

func TestWarningsForCluster(t *testing.T) {
	c := validCluster()
	if w := WarningsForCluster(c); len(w) != 0 {
		t.Errorf("no warning expected, got %v", w)
	}
	c.Spec.InsecureSkipTLSVerify = true
	if w := WarningsForCluster(c); len(w) != 1 || !strings.HasPrefix(w[0], "spec.insecureSkipTLSVerify: ") {
		t.Errorf("insecureSkipTLSVerify: warnings = %v", w)
	}
	c.Spec.TLSServerName = "member1.example.com"
	if w := WarningsForCluster(c); len(w) != 2 || !strings.HasPrefix(w[1], "spec.tlsServerName: ") {
		t.Errorf("insecureSkipTLSVerify with tlsServerName: warnings = %v", w)
	}
}

// A policy is compiled, when written, with only what every API server of
// this version's compatibility range knows; a policy already stored, which
// a newer server may have accepted, does not block an update of something
// else. includes() came with the lists library of Kubernetes 1.37, newer
// than this build's compatibility version (1.36).
func TestValidateClusterUpdateOfAStoredPolicy(t *testing.T) {
	newer := &cluster.IdentityPolicy{Rules: []cluster.IdentityRule{{Expression: `!user.groups.includes("system:masters")`}}}
	created := validCluster()
	created.Spec.Identity = newer.DeepCopy()
	if got := fieldsOf(ValidateCluster(created)); strings.Join(got, ",") != "FieldValueInvalid spec.identity.rules[0].expression" {
		t.Fatalf("creating a Cluster whose policy uses includes(): errors = %v, want the expression refused", got)
	}

	old := validCluster()
	old.Spec.Identity = newer.DeepCopy()
	moved := validCluster()
	moved.Spec.Endpoint = "https://10.0.0.99:6443"
	moved.Spec.Identity = newer.DeepCopy()
	if errs := ValidateClusterUpdate(moved, old); len(errs) != 0 {
		t.Errorf("moving a member whose stored policy uses includes(): %v, want no error", errs)
	}

	changed := moved.DeepCopy()
	changed.Spec.Identity.Rules[0].Message = "no hub administrators"
	if got := fieldsOf(ValidateClusterUpdate(changed, old)); strings.Join(got, ",") != "FieldValueInvalid spec.identity.rules[0].expression" {
		t.Errorf("changing a policy that uses includes(): errors = %v, want the expression refused", got)
	}
}
