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

// Package integration runs the real switchboard-apiserver command in-process
// and drives it through the generated clientset. With no hub to delegate to,
// clients authenticate with certificates from --client-ca-file, and only
// system:masters is authorized.
package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/rest"
	logsapi "k8s.io/component-base/logs/api/v1"

	"github.com/switchboard-io/switchboard/pkg/cmd/server"
	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
	"github.com/switchboard-io/switchboard/test/testcerts"
)

func TestMain(m *testing.M) {
	// Every test runs the command again in this one process. Logging is
	// applied here, before any goroutine logs, and each server's identical
	// configuration is then accepted unchanged.
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
	if err := logsapi.ValidateAndApply(logsapi.NewLoggingConfiguration(), utilfeature.DefaultFeatureGate); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// pki is one set of certificates for a test: a CA that signs the server's
// serving certificate and the clients' certificates.
type pki struct {
	dir      string
	ca       *testcerts.CA
	caFile   string
	certFile string
	keyFile  string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := testcerts.NewCA("switchboard-test-ca")
	if err != nil {
		t.Fatal(err)
	}
	caFile, err := ca.WriteCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.ServingPair([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := serving.Write(dir, "serving")
	if err != nil {
		t.Fatal(err)
	}
	return &pki{dir: dir, ca: ca, caFile: caFile, certFile: certFile, keyFile: keyFile}
}

// testServer is a switchboard-apiserver running in this process.
type testServer struct {
	t      *testing.T
	pki    *pki
	host   string
	cancel context.CancelFunc
	done   chan error
	output *bytes.Buffer
}

// serverArgs are the flags every test server gets; tests add storage flags.
func (p *pki) serverArgs(port int) []string {
	return []string{
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + p.certFile,
		"--tls-private-key-file=" + p.keyFile,
		"--client-ca-file=" + p.caFile,
	}
}

// startServer runs the command with the given storage flags (--data-dir or
// --etcd-servers) and waits until /readyz passes.
func startServer(t *testing.T, p *pki, storageArgs ...string) *testServer {
	t.Helper()
	s := launch(t, p, storageArgs...)
	if err := s.waitReady(90 * time.Second); err != nil {
		stopErr := s.stop()
		t.Fatalf("server did not become ready: %v (the command returned: %v)\n%s", err, stopErr, s.output)
	}
	return s
}

// launch runs the command without waiting for it to be ready.
func launch(t *testing.T, p *pki, storageArgs ...string) *testServer {
	t.Helper()
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := server.NewCommand(ctx)
	cmd.SetArgs(append(p.serverArgs(port), storageArgs...))
	output := &bytes.Buffer{}
	cmd.SetOut(output)
	cmd.SetErr(output)
	s := &testServer{t: t, pki: p, host: "https://127.0.0.1:" + strconv.Itoa(port), cancel: cancel, done: make(chan error, 1), output: output}
	go func() { s.done <- cmd.Execute() }()
	// Tests that care what the command returned call stop themselves;
	// this one only makes sure that it ends.
	t.Cleanup(func() { _ = s.stop() })
	return s
}

// stop cancels the server and returns what the command returned.
func (s *testServer) stop() error {
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok {
			close(s.done)
			return err
		}
		return nil
	case <-time.After(2 * time.Minute):
		s.t.Errorf("server at %s did not stop within 2 minutes", s.host)
		return nil
	}
}

// exited says whether the command has returned, and what it returned,
// without waiting.
func (s *testServer) exited() (bool, error) {
	select {
	case err, ok := <-s.done:
		if ok {
			close(s.done)
		}
		return true, err
	default:
		return false, nil
	}
}

func (s *testServer) waitReady(timeout time.Duration) error {
	client := s.httpClient(s.adminConfig())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if done, err := s.exited(); done {
			if err == nil {
				return false, errors.New("server exited without an error")
			}
			return false, fmt.Errorf("server exited: %w", err)
		}
		code, body := get(ctx, client, s.host+"/readyz")
		last = fmt.Sprintf("%d %s", code, body)
		return code == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last /readyz: %s)", err, last)
	}
	return nil
}

// userConfig returns a client configuration that authenticates as user in groups.
func (s *testServer) userConfig(user string, groups ...string) *rest.Config {
	s.t.Helper()
	pair, err := s.pki.ca.ClientPair(user, groups...)
	if err != nil {
		s.t.Fatal(err)
	}
	return &rest.Config{
		Host: s.host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   s.pki.ca.CertPEM,
			CertData: pair.CertPEM,
			KeyData:  pair.KeyPEM,
		},
		QPS:   -1,
		Burst: -1,
	}
}

// adminConfig authenticates as a member of system:masters, which the server
// authorizes without asking a hub.
func (s *testServer) adminConfig() *rest.Config {
	return s.userConfig("admin", "system:masters")
}

func (s *testServer) clientset() clientset.Interface {
	s.t.Helper()
	c, err := clientset.NewForConfig(s.adminConfig())
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

func (s *testServer) httpClient(config *rest.Config) *http.Client {
	s.t.Helper()
	c, err := rest.HTTPClientFor(config)
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

func get(ctx context.Context, client *http.Client, url string) (int, string) {
	return do(ctx, client, http.MethodGet, url, "", nil)
}

func do(ctx context.Context, client *http.Client, method, url, contentType string, body []byte) (int, string) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func dataDirArg(dir string) string { return "--data-dir=" + filepath.Join(dir, "data") }

// tlsTrusting returns a TLS configuration that trusts the test CA and
// presents no client certificate: an anonymous caller.
func tlsTrusting(p *pki) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.ca.CertPEM)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
