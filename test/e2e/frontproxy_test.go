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
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/switchboard-io/switchboard/test/testcerts"
	"github.com/switchboard-io/switchboard/test/topology"
)

const (
	authConfigMap = "extension-apiserver-authentication"
	// requestHeaderCAKey is where kube-apiserver publishes its
	// --requestheader-client-ca-file, which switchboard trusts for the
	// aggregator's client certificate.
	requestHeaderCAKey = "requestheader-client-ca-file"
)

// TestFrontProxyCARotation moves the hub's front-proxy CA to a new one
// while requests flow through the hub, the way an administrator does:
//  1. the hub's --requestheader-client-ca-file holds both CAs, and
//     kube-apiserver publishes both in kube-system/extension-apiserver-
//     authentication;
//  2. the aggregator's --proxy-client-cert-file pair is replaced by one
//     from the new CA;
//  3. the old CA leaves the file and the ConfigMap.
//
// switchboard must accept the new CA with no restart, refuse a certificate
// from the old CA once it is gone, and no request through the hub may fail
// at any step. At the end the topology's own CA and pair are put back the
// same way.
func TestFrontProxyCARotation(t *testing.T) {
	ctx := context.Background()
	s := f.State
	fp := s.FrontProxy
	hub := f.Hub(t)
	oldCAPEM := mustRead(t, fp.CACert)
	oldPair := &testcerts.Pair{CertPEM: mustRead(t, fp.ClientCert), KeyPEM: mustRead(t, fp.ClientKey)}
	newCA, err := testcerts.NewCA("front-proxy-ca-rotated")
	if err != nil {
		t.Fatal(err)
	}
	newPair, err := newCA.ClientPair(topology.FrontProxyClientName)
	if err != nil {
		t.Fatal(err)
	}
	if got := caBundleOf(t, hub); !sameCerts(got, oldCAPEM) {
		t.Fatalf("%s holds %d certificates before the rotation, not the topology's front-proxy CA", authConfigMap, len(got))
	}
	if code, body := directAsAggregator(t, s, newPair); !refused(code, body) {
		t.Fatalf("before the rotation, a pair from the new CA: %d %s, want it refused", code, body)
	}

	load := startHubLoad(t, f.HubConfig(t), s)
	members := startMemberLoad(t, f.HubConfig(t), "member1", 2)
	began := time.Now()
	rotate := func(t *testing.T, from, to []byte, fromPair, toPair *testcerts.Pair, step string) {
		// 1. Both CAs.
		both := slices.Concat(from, to)
		if err := testcerts.RenameOver(fp.CACert, both); err != nil {
			t.Fatal(err)
		}
		took := waitCABundle(t, hub, both)
		t.Logf("%s: kube-apiserver published both CAs %s after its file changed", step, took.Round(time.Millisecond))
		took = waitDirect(t, s, toPair, func(code int, _ string) bool { return code == http.StatusOK })
		t.Logf("%s: switchboard accepted a pair from the new CA %s later, with no restart", step, took.Round(time.Millisecond))
		if code, body := directAsAggregator(t, s, fromPair); code != http.StatusOK {
			t.Errorf("%s: with both CAs, a pair from the old CA: %d %s", step, code, body)
		}
		load.check(t, step+", both CAs trusted", 10)

		// 2. The aggregator's new pair.
		replacePair(t, fp.ClientCert, fp.ClientKey, toPair)
		time.Sleep(bundleSettle)
		load.check(t, step+", the aggregator's pair from the new CA", 10)

		// 3. The old CA goes from the file, then from the ConfigMap:
		// kube-apiserver only ever adds to what the ConfigMap holds, so
		// that API servers with different CAs can share it.
		if err := testcerts.RenameOver(fp.CACert, to); err != nil {
			t.Fatal(err)
		}
		time.Sleep(bundleSettle)
		took = removeFromCABundle(t, hub, to)
		t.Logf("%s: the ConfigMap held only the new CA %s after the edit", step, took.Round(time.Millisecond))
		took = waitDirect(t, s, fromPair, refused)
		t.Logf("%s: switchboard refused a pair from the old CA %s later", step, took.Round(time.Millisecond))
		if code, body := directAsAggregator(t, s, toPair); code != http.StatusOK {
			t.Errorf("%s: a pair from the new CA after the old one went: %d %s", step, code, body)
		}
		load.check(t, step+", only the new CA", 20)
	}

	restored := false
	t.Cleanup(func() {
		if restored {
			return
		}
		// Put the topology's CA and pair back, whatever step failed.
		if err := testcerts.RenameOver(fp.CACert, slices.Concat(oldCAPEM, newCA.CertPEM)); err != nil {
			t.Error(err)
		}
		replacePair(t, fp.ClientCert, fp.ClientKey, oldPair)
		time.Sleep(bundleSettle)
		if err := testcerts.RenameOver(fp.CACert, oldCAPEM); err != nil {
			t.Error(err)
		}
		time.Sleep(bundleSettle)
		removeFromCABundle(t, hub, oldCAPEM)
		eventually(t, rotationWait, func() error { return s.APIServiceAvailable(ctx) })
	})

	t.Run("to a new CA", func(t *testing.T) {
		rotate(t, oldCAPEM, newCA.CertPEM, oldPair, newPair, "to the new CA")
	})
	t.Run("back to the topology's CA", func(t *testing.T) {
		rotate(t, newCA.CertPEM, oldCAPEM, newPair, oldPair, "back")
		restored = true
	})

	load.stop()
	members.stop()
	n := 0
	for _, a := range members.snapshot() {
		if a.kind != "ok" {
			t.Errorf("%s, a request to member1 through the hub: %s", a.start.UTC().Format("15:04:05.000"), a.what)
		}
		n++
	}
	t.Logf("%d requests to member1 through the hub (GETs and watches) in %s, every one answered 200", n, time.Since(began).Round(time.Second))
}

// directAsAggregator GETs Clusters from switchboard directly, as the hub's
// aggregator does: with pair as its client certificate and the hub's
// administrator in the X-Remote headers. Each call makes a new connection.
func directAsAggregator(t *testing.T, s *topology.State, pair *testcerts.Pair) (int, string) {
	t.Helper()
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:      rootsOf(mustRead(t, s.Switchboard.CACert)),
			Certificates: []tls.Certificate{cert},
			ServerName:   topology.SwitchboardServerName,
			MinVersion:   tls.VersionTLS12,
		}},
		Timeout: 30 * time.Second,
	}
	defer client.CloseIdleConnections()
	code, body, err := topology.FrontProxyGet(context.Background(), client, s.Switchboard.URL+"/apis/cluster.switchboard.io/v1alpha1/clusters")
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

// refused says whether switchboard did not take a request as the
// aggregator's: 401, or 403 to system:anonymous, whatever the X-Remote
// headers said.
func refused(code int, body string) bool {
	return code == http.StatusUnauthorized || code == http.StatusForbidden && strings.Contains(body, `system:anonymous`)
}

// waitDirect waits until a direct request with pair gets an answer that
// want accepts, and says how long that took.
func waitDirect(t *testing.T, s *topology.State, pair *testcerts.Pair, want func(code int, body string) bool) time.Duration {
	t.Helper()
	began := time.Now()
	eventually(t, rotationWait, func() error {
		if code, body := directAsAggregator(t, s, pair); !want(code, body) {
			return fmt.Errorf("a direct request answered %d %.200s", code, body)
		}
		return nil
	})
	return time.Since(began)
}

// caBundleOf is the requestheader CA bundle the hub publishes, one DER
// certificate per entry.
func caBundleOf(t *testing.T, hub kubernetes.Interface) [][]byte {
	t.Helper()
	cm, err := hub.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(context.Background(), authConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return certsOf([]byte(cm.Data[requestHeaderCAKey]))
}

func certsOf(data []byte) [][]byte {
	var out [][]byte
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type == "CERTIFICATE" {
			out = append(out, block.Bytes)
		}
	}
}

// sameCerts says whether got holds the certificates of want's PEM, in any
// order.
func sameCerts(got [][]byte, want []byte) bool {
	w := certsOf(want)
	if len(got) != len(w) {
		return false
	}
	for _, c := range w {
		if !slices.ContainsFunc(got, func(g []byte) bool { return string(g) == string(c) }) {
			return false
		}
	}
	return true
}

// waitCABundle waits until the hub publishes exactly the certificates of
// want.
func waitCABundle(t *testing.T, hub kubernetes.Interface, want []byte) time.Duration {
	t.Helper()
	began := time.Now()
	eventually(t, rotationWait, func() error {
		if got := caBundleOf(t, hub); !sameCerts(got, want) {
			return fmt.Errorf("%s holds %d certificates, want the %d of the rotation (%s)", authConfigMap, len(got), len(certsOf(want)), commonNames(got))
		}
		return nil
	})
	return time.Since(began)
}

// removeFromCABundle edits the ConfigMap to hold only want's certificates,
// as an administrator does once every API server's file holds only them,
// and waits until it stays so.
func removeFromCABundle(t *testing.T, hub kubernetes.Interface, want []byte) time.Duration {
	t.Helper()
	began := time.Now()
	cms := hub.CoreV1().ConfigMaps(metav1.NamespaceSystem)
	eventually(t, rotationWait, func() error {
		cm, err := cms.Get(context.Background(), authConfigMap, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if sameCerts(certsOf([]byte(cm.Data[requestHeaderCAKey])), want) {
			return nil
		}
		cm.Data[requestHeaderCAKey] = string(want)
		if _, err := cms.Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
			return err
		}
		return fmt.Errorf("edited %s; checking that it stays so", authConfigMap)
	})
	return time.Since(began)
}

// commonNames lists the subjects of DER certificates, for messages.
func commonNames(certs [][]byte) string {
	var out []string
	for _, der := range certs {
		if c, err := x509.ParseCertificate(der); err == nil {
			out = append(out, c.Subject.CommonName)
		}
	}
	return strings.Join(out, ", ")
}
