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

package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/pkg/agent"
)

func valid() *Options {
	o := NewOptions()
	o.Cluster = "edge1"
	o.MemberAddress = "10.96.0.1:443"
	return o
}

func TestTheMemberAddressDefaultsToTheKubernetesService(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	if got := NewOptions().MemberAddress; got != "[fd00::1]:443" {
		t.Errorf("--member-address defaults to %q, want [fd00::1]:443", got)
	}
}

func TestValidate(t *testing.T) {
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		want   []string
	}{
		{"no cluster", func(o *Options) { o.Cluster = "" }, []string{"--cluster is required"}},
		{"bad cluster", func(o *Options) { o.Cluster = "Edge_1" }, []string{`--cluster "Edge_1" is not a Cluster name`}},
		{"no member", func(o *Options) { o.MemberAddress = "" }, []string{"--member-address is required"}},
		{"member without port", func(o *Options) { o.MemberAddress = "kubernetes.default.svc" }, []string{"must be host:port"}},
		{"zero server count", func(o *Options) { o.ServerCount = 0 }, []string{"--server-count must be at least 1"}},
		{"bad health address", func(o *Options) { o.HealthProbeBindAddress = "8081" }, []string{"--health-probe-bind-address"}},
		{"every duration zero", func(o *Options) {
			o.DialTimeout, o.KeepAlive.Interval, o.KeepAlive.Timeout = 0, 0, -time.Second
		}, []string{"--dial-timeout must be positive", "--keepalive-interval must be positive", "--keepalive-timeout must be positive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.mutate(o)
			err := o.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

func TestHealthEndpoints(t *testing.T) {
	// An agent that never connects: its hub does not exist.
	a, err := agent.New(agent.Config{Hub: &rest.Config{Host: "https://127.0.0.1:1"}, Cluster: "edge1", MemberAddress: "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	server := httptest.NewServer(healthHandler(a))
	defer server.Close()
	for path, want := range map[string]int{"/healthz": http.StatusOK, "/readyz": http.StatusServiceUnavailable} {
		resp, err := http.Get(server.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
