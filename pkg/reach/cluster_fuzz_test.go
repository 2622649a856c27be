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

package reach

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	certutil "k8s.io/client-go/util/cert"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/validation"
	"github.com/switchboard-io/switchboard/pkg/identity"
)

// errDialed ends a fuzzed request where it would leave switchboard.
var errDialed = errors.New("dialled")

// dialRecorder is a Dialers whose Dialer records the address it is asked
// for and connects to nothing.
type dialRecorder struct {
	mu    sync.Mutex
	addrs []string
}

func (d *dialRecorder) DialerFor(*v1alpha1.Cluster) (Dialer, error) {
	return DialerFunc(func(_ context.Context, _, addr string) (net.Conn, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.addrs = append(d.addrs, addr)
		return nil, errDialed
	}), nil
}

// FuzzClusterValidation: Cluster validation never panics, and whatever it
// accepts, the proxy can use: the transport builds (with the Network
// dialers too, which parse proxyURL), the identity policy compiles as the
// transport compiles it, and a request to the member is dialled at the
// endpoint's own host and port (443 when it names none).
func FuzzClusterValidation(f *testing.F) {
	caPEM, _, err := certutil.GenerateSelfSignedCertKey("member.example", nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("m1", "Direct", "https://10.0.0.12:6443", "", "", false, "m1-credentials", "", "")
	f.Add("m1", "Direct", "https://gw.example/clusters/m1/", "api.m1", "socks5://proxy:1080", false, "s", "'hub:' + user.username", "user.groups")
	f.Add("m1", "Tunnel", "https://[::1]:443", "", "", false, "s", "", "")
	f.Add("m1", "Direct", "https://host:6443/a%2Fb", "", "http://proxy", true, "s", "", "")
	f.Add("M1", "direct", "https://host:0?x#y", "-", "ftp://p", false, "", "1 +", "")
	f.Add("m1", "Direct", "https://h\x00st", "", "https://u:p@proxy/path", false, "s", "", "")
	f.Fuzz(func(t *testing.T, name, connection, endpoint, serverName, proxyURL string, insecure bool, secret, username, groups string) {
		internal := &cluster.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "1"},
			Spec: cluster.ClusterSpec{
				Connection:            cluster.Connection(connection),
				Endpoint:              endpoint,
				CredentialsSecretRef:  cluster.SecretReference{Name: secret},
				InsecureSkipTLSVerify: insecure,
				TLSServerName:         serverName,
				ProxyURL:              proxyURL,
			},
		}
		if username != "" || groups != "" {
			internal.Spec.Identity = &cluster.IdentityPolicy{Username: username, Groups: groups}
		}
		if errs := validation.ValidateCluster(internal); len(errs) > 0 {
			return
		}
		_ = validation.WarningsForCluster(internal)
		cl := &v1alpha1.Cluster{}
		if err := v1alpha1.Convert_cluster_Cluster_To_v1alpha1_Cluster(internal, cl, nil); err != nil {
			t.Fatalf("a valid Cluster does not convert: %v", err)
		}

		if _, err := (Network{}).DialerFor(cl); err != nil {
			t.Fatalf("accepted %+v, but no dialer: %v", cl.Spec, err)
		}
		if _, errs := identity.Compile(identity.FromV1alpha1(cl.Spec.Identity), field.NewPath("spec", "identity")); len(errs) > 0 {
			t.Fatalf("accepted an identity policy that the transport cannot compile: %v", errs.ToAggregate())
		}
		dialed := &dialRecorder{}
		cache := NewTransportCache(Config{Dialers: dialed})
		member, err := cache.Get(cl, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "switchboard-system", Name: secret, ResourceVersion: "1"},
			Data:       map[string][]byte{v1alpha1.SecretKeyToken: []byte("sb-token"), v1alpha1.SecretKeyCABundle: caPEM},
		})
		if err != nil {
			t.Fatalf("accepted %+v, but no transport: %v", cl.Spec, err)
		}

		location := member.Endpoint()
		location.Path = JoinPath(location.Path, "/api/v1/pods")
		req := httptest.NewRequest(http.MethodGet, "https://switchboard.example/", nil)
		req.URL, req.Host = &location, location.Host
		req = req.WithContext(request.WithUser(req.Context(), &user.DefaultInfo{Name: "alice"}))
		resp, err := member.AsCaller().RoundTrip(req)
		if err == nil {
			_ = resp.Body.Close()
			t.Fatal("a request went out without a dial")
		}
		var policyErr *PolicyError
		if errors.As(err, &policyErr) {
			return // the policy refuses alice
		}
		if !errors.Is(err, errDialed) {
			t.Fatalf("accepted %+v, but a request to it fails before it is sent: %v", cl.Spec, err)
		}
		// The address, from the endpoint as written, not as the transport
		// parsed it.
		written, err := url.Parse(cl.Spec.Endpoint)
		if err != nil {
			t.Fatalf("accepted an endpoint that does not parse: %v", err)
		}
		port := written.Port()
		if port == "" {
			port = "443"
		}
		if want := net.JoinHostPort(written.Hostname(), port); len(dialed.addrs) != 1 || dialed.addrs[0] != want {
			t.Fatalf("dialled %q for %s, want %q", dialed.addrs, cl.Spec.Endpoint, want)
		}
	})
}
