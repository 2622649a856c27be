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

package apiserver

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	restclient "k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	basecompatibility "k8s.io/component-base/compatibility"
)

// startGenericServer runs a bare generic server on loopback with a
// pre-shutdown hook that returns once release is closed, and returns it,
// the URL of a path it answers, and the cancel that begins its shutdown.
func startGenericServer(t *testing.T, hookStarted chan<- struct{}, release <-chan struct{}) (*server.GenericAPIServer, <-chan struct{}, string, context.CancelFunc, <-chan error) {
	t.Helper()
	cfg := server.NewConfig(Codecs)
	cfg.EffectiveVersion = basecompatibility.NewEffectiveVersionFromString("1.37.0", "", "")
	cfg.LoopbackClientConfig = &restclient.Config{}
	cfg.ExternalAddress = "127.0.0.1:443"
	cfg.ShutdownDelayDuration = 0
	s, err := cfg.Complete(nil).New("shutdown-test", server.NewEmptyDelegate())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := dynamiccertificates.NewStaticCertKeyContent("serving", certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.SecureServingInfo = &server.SecureServingInfo{Listener: ln, Cert: cert}
	s.Handler.NonGoRestfulMux.HandleFunc("/ping", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	if err := s.AddPreShutdownHook("slow-hook", func() error {
		close(hookStarted)
		<-release
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.PrepareRun().RunWithContext(ctx) }()
	return s, cfg.ShutdownInitiatedNotify(), "https://" + ln.Addr().String() + "/ping", cancel, done
}

// The signal that ends proxied watches follows the generic server: while
// a pre-shutdown hook runs, the server still takes new requests, and the
// signal waits; once the hook returns, it fires.
func TestNotAcceptingNewRequestsWaitsForPreShutdownHooks(t *testing.T) {
	hookStarted, release := make(chan struct{}), make(chan struct{})
	s, initiated, url, shutdown, done := startGenericServer(t, hookStarted, release)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a self-signed test server.
	ping := func() int {
		resp, err := client.Get(url)
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for ping() != http.StatusOK {
		time.Sleep(10 * time.Millisecond)
	}

	signal := notAcceptingNewRequests(initiated, s)
	shutdown()
	<-hookStarted
	// The hook holds the generic server back: it still serves, and the
	// signal must not fire. A check made right after the delay, ignoring
	// the hooks, would have fired by now.
	for i := range 20 {
		if code := ping(); code != http.StatusOK {
			t.Fatalf("ping %d while the pre-shutdown hook runs: %d, want 200", i, code)
		}
		if signal.Err() != nil {
			t.Fatalf("the signal fired while the generic server still takes new requests (ping %d)", i)
		}
		time.Sleep(2 * refusalPoll)
	}

	close(release)
	select {
	case <-signal.Done():
	case <-time.After(time.Minute):
		t.Fatal("the signal did not fire after the pre-shutdown hook returned")
	}
	if code := ping(); code == http.StatusOK {
		t.Errorf("a new request after the signal got 200; the generic server should turn it away")
	}
	if err := <-done; err != nil {
		t.Errorf("the server stopped with %v", err)
	}
}
