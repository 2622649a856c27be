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
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/test/testcerts"
	"github.com/switchboard-io/switchboard/test/topology"
)

// rotationWait bounds how long switchboard may take to serve a replaced
// pair (k8s.io/apiserver watches the files, and looks again every minute).
const rotationWait = 2 * time.Minute

// bundleSettle is how long the test leaves the hub's aggregator to apply a
// changed caBundle before relying on it, as an administrator waits before
// the next step of a CA rotation. The aggregator applies APIService changes
// from its informer, in milliseconds; the rest is room for a loaded machine.
const bundleSettle = 3 * time.Second

// TestServingCertRotationThroughHub replaces the topology's switchboard
// serving pair on disk while requests flow through the hub, the two ways an
// administrator does: a new pair from the same CA, and a move to a new CA
// (the caBundle first trusts both CAs, then the pair changes, then the
// caBundle drops the old CA). New connections must get the new certificate,
// the APIService must stay Available, and no request through the hub may
// fail at any step. At the end the topology's own pair and caBundle are put
// back the same way.
func TestServingCertRotationThroughHub(t *testing.T) {
	ctx := context.Background()
	s := f.State
	pki := s.Switchboard.PKI
	if pki.CAKey == "" {
		t.Fatalf("the topology in %s records no key for switchboard's serving CA (it was started by an older version): make local-down && make local-up", s.RunDir)
	}
	oldCA, err := testcerts.LoadCA(pki.CACert, pki.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	original := &testcerts.Pair{CertPEM: mustRead(t, pki.ServingCert), KeyPEM: mustRead(t, pki.ServingKey)}
	originalSerial, err := testcerts.Serial(original.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(s.Switchboard.URL, "https://")
	oldRoots := rootsOf(oldCA.CertPEM)
	if got := servingSerial(t, addr, oldRoots); got.Cmp(originalSerial) != 0 {
		t.Fatalf("switchboard presents serial %v, not the %v of %s", got, originalSerial, pki.ServingCert)
	}

	load := startHubLoad(t, f.HubConfig(t), s)
	var newCA *testcerts.CA
	t.Cleanup(func() {
		// Back to the topology's own pair, the way it was left.
		if newCA != nil {
			if err := s.SetAPIServiceCABundle(ctx, slices.Concat(oldCA.CertPEM, newCA.CertPEM)); err != nil {
				t.Errorf("restoring: %v", err)
			}
			time.Sleep(bundleSettle)
		}
		replacePair(t, pki.ServingCert, pki.ServingKey, original)
		waitServingSerial(t, addr, nil, originalSerial)
		if err := s.SetAPIServiceCABundle(ctx, oldCA.CertPEM); err != nil {
			t.Errorf("restoring: %v", err)
		}
		load.stop()
		eventually(t, rotationWait, func() error { return s.APIServiceAvailable(ctx) })
	})

	t.Run("a new pair from the same CA", func(t *testing.T) {
		pair, err := topology.SwitchboardServingPair(oldCA)
		if err != nil {
			t.Fatal(err)
		}
		serial, _ := testcerts.Serial(pair.CertPEM)
		replacePair(t, pki.ServingCert, pki.ServingKey, pair)
		took := waitServingSerial(t, addr, oldRoots, serial)
		t.Logf("new connections get the new certificate %s after the swap", took.Round(time.Millisecond))
		load.check(t, "after the swap", 10)
		// The hub still uses the connection it made before the swap. A
		// caBundle it has not seen (the CA twice) makes it build a new
		// transport, whose connections must accept the new certificate.
		forceNewHubConnections(t, s, slices.Concat(oldCA.CertPEM, oldCA.CertPEM))
		load.check(t, "over new connections from the hub", 20)
	})

	t.Run("a move to a new CA", func(t *testing.T) {
		newCA, err = testcerts.NewCA("switchboard-serving-ca-rotated")
		if err != nil {
			t.Fatal(err)
		}
		newRoots := rootsOf(newCA.CertPEM)

		// 1. The hub trusts both CAs.
		if err := s.SetAPIServiceCABundle(ctx, slices.Concat(oldCA.CertPEM, newCA.CertPEM)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(bundleSettle)
		load.check(t, "with both CAs in the caBundle", 10)

		// 2. switchboard serves a pair from the new CA.
		pair, err := topology.SwitchboardServingPair(newCA)
		if err != nil {
			t.Fatal(err)
		}
		serial, _ := testcerts.Serial(pair.CertPEM)
		replacePair(t, pki.ServingCert, pki.ServingKey, pair)
		took := waitServingSerial(t, addr, nil, serial)
		t.Logf("new connections get the certificate from the new CA %s after the swap", took.Round(time.Millisecond))
		if _, err := testcerts.Presented(addr, topology.SwitchboardServerName, oldRoots); !isUnknownAuthority(err) {
			t.Errorf("a new connection trusting only the old CA: err = %v, want an unknown-authority error", err)
		}
		if got := servingSerial(t, addr, newRoots); got.Cmp(serial) != 0 {
			t.Errorf("a new connection trusting the new CA gets serial %v, want %v", got, serial)
		}
		load.check(t, "after the swap to the new CA", 10)
		forceNewHubConnections(t, s, slices.Concat(newCA.CertPEM, oldCA.CertPEM))
		load.check(t, "over new connections from the hub, trusting both CAs", 20)

		// 3. The hub trusts only the new CA. The aggregator keeps one
		// transport per TLS configuration, and this caBundle is new to it,
		// so its requests from here on go over new connections verified
		// against the new CA alone.
		if err := s.SetAPIServiceCABundle(ctx, newCA.CertPEM); err != nil {
			t.Fatal(err)
		}
		time.Sleep(bundleSettle)
		load.check(t, "with only the new CA in the caBundle", 20)
	})
}

// forceNewHubConnections sets a caBundle the hub's aggregator has not used
// before: it keeps one transport, with its connections, per TLS
// configuration, so its requests from then on go over new connections.
func forceNewHubConnections(t *testing.T, s *topology.State, caBundle []byte) {
	t.Helper()
	if err := s.SetAPIServiceCABundle(context.Background(), caBundle); err != nil {
		t.Fatal(err)
	}
	time.Sleep(bundleSettle)
}

// hubLoad lists Clusters through the hub every 100ms and checks the
// APIService every second, remembering every failure.
type hubLoad struct {
	done chan struct{}
	wg   sync.WaitGroup

	mu        sync.Mutex
	ok        int
	failures  []string
	checked   int // how many failures check has reported
	okChecked int
}

func startHubLoad(t *testing.T, config *rest.Config, s *topology.State) *hubLoad {
	l := &hubLoad{done: make(chan struct{})}
	l.wg.Go(func() {
		for l.wait(100 * time.Millisecond) {
			code, body, err := rawRequest(config, http.MethodGet, "/apis/cluster.switchboard.io/v1alpha1/clusters", nil)
			l.record(err == nil && code == http.StatusOK, func() string { return "GET clusters through the hub: " + describe(code, body, err) })
		}
	})
	l.wg.Go(func() {
		for l.wait(time.Second) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := s.APIServiceAvailable(ctx)
			cancel()
			l.record(err == nil, func() string { return fmt.Sprint(err) })
		}
	})
	t.Cleanup(l.stop)
	return l
}

// wait sleeps for d and says whether the load goes on.
func (l *hubLoad) wait(d time.Duration) bool {
	select {
	case <-l.done:
		return false
	case <-time.After(d):
		return true
	}
}

func (l *hubLoad) record(ok bool, describe func() string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok {
		l.ok++
		return
	}
	l.failures = append(l.failures, time.Now().UTC().Format("15:04:05.000")+" "+describe())
}

// check waits for at least n more successes and fails the test for every
// failure since the last check.
func (l *hubLoad) check(t *testing.T, step string, n int) {
	t.Helper()
	l.mu.Lock()
	target := l.okChecked + n
	l.mu.Unlock()
	eventually(t, rotationWait, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.ok < target {
			last := "none"
			if len(l.failures) > l.checked {
				last = l.failures[len(l.failures)-1]
			}
			return fmt.Errorf("%d of %d successful checks through the hub %s; %d failed, the last: %s",
				l.ok-l.okChecked, n, step, len(l.failures)-l.checked, last)
		}
		return nil
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.failures[l.checked:] {
		t.Errorf("%s: %s", step, f)
	}
	t.Logf("%s: %d successful checks through the hub (requests and APIService Available), %d failed", step, l.ok-l.okChecked, len(l.failures)-l.checked)
	l.checked, l.okChecked = len(l.failures), l.ok
}

func (l *hubLoad) stop() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
}

// replacePair renames a new key, then a new certificate over the files, as
// an administrator or a certificate tool replaces them.
func replacePair(t *testing.T, certFile, keyFile string, pair *testcerts.Pair) {
	t.Helper()
	if err := testcerts.RenameOver(keyFile, pair.KeyPEM); err != nil {
		t.Fatal(err)
	}
	if err := testcerts.RenameOver(certFile, pair.CertPEM); err != nil {
		t.Fatal(err)
	}
}

// waitServingSerial makes new connections to addr until switchboard presents
// want, and returns how long that took. With roots, every connection must
// verify.
func waitServingSerial(t *testing.T, addr string, roots *x509.CertPool, want *big.Int) time.Duration {
	t.Helper()
	began := time.Now()
	for {
		cert, err := testcerts.Presented(addr, topology.SwitchboardServerName, roots)
		if err != nil {
			t.Fatalf("a new connection to switchboard during the rotation: %v", err)
		}
		if cert.SerialNumber.Cmp(want) == 0 {
			return time.Since(began)
		}
		if time.Since(began) > rotationWait {
			t.Fatalf("switchboard still presents serial %v, %s after its files were replaced (want %v)", cert.SerialNumber, rotationWait, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func servingSerial(t *testing.T, addr string, roots *x509.CertPool) *big.Int {
	t.Helper()
	cert, err := testcerts.Presented(addr, topology.SwitchboardServerName, roots)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber
}

func isUnknownAuthority(err error) bool {
	var unknown x509.UnknownAuthorityError
	return errors.As(err, &unknown)
}

func rootsOf(pem []byte) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
