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

package integration

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/test/testcerts"
)

// The serving pair is read from --tls-cert-file and --tls-private-key-file
// by k8s.io/apiserver's DynamicServingCertificateController, which watches
// both files (and looks again every minute). These tests replace the files
// under a running server, the two ways they are replaced in practice, and
// check what old and new connections see.

// rotationTimeout bounds how long the server may take to serve a new pair.
const rotationTimeout = 2 * time.Minute

// clustersPath is a request only an authenticated administrator may make.
const clustersPath = "/apis/cluster.switchboard.io/v1alpha1/clusters"

// TestServingCertRotationSameCA replaces the pair by renaming new files over
// the old ones, key first, then certificate. New connections get the new
// certificate, which verifies against the same CA, and no new connection
// fails meanwhile, not even between the two renames when key and
// certificate do not match; a keep-alive connection opened before the swap
// keeps working on the certificate it negotiated.
func TestServingCertRotationSameCA(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p, dataDirArg(t.TempDir()))
	addr := strings.TrimPrefix(s.host, "https://")
	roots := certPool(p.ca.CertPEM)

	oldSerial := fileSerial(t, p.certFile)
	if got, err := testcerts.Presented(addr, "", roots); err != nil || got.SerialNumber.Cmp(oldSerial) != 0 {
		t.Fatalf("before the swap: presented %v (%v), want serial %v from %s", serialOrNil(got), err, oldSerial, p.certFile)
	}
	kept := newKeptClient(t, s, roots)
	before := kept.get(t)

	pair, err := p.ca.ServingPair([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	newSerial := pemSerial(t, pair.CertPEM)
	swapped := time.Now()
	mustRenameOver(t, p.keyFile, pair.KeyPEM)
	mustRenameOver(t, p.certFile, pair.CertPEM)

	// Every new connection, verified against the CA, presents the old or
	// the new certificate until only the new one is left.
	polls := waitForServingSerial(t, addr, roots, oldSerial, newSerial, kept)
	t.Logf("new certificate served %s after the swap (%d new connections, all verified)", time.Since(swapped).Round(time.Millisecond), polls)

	after := kept.get(t)
	if after.local != before.local || !after.reused {
		t.Errorf("the keep-alive request went over a new connection (%s, reused %v), want the one from before the swap (%s)", after.local, after.reused, before.local)
	}
	if after.serial.Cmp(oldSerial) != 0 {
		t.Errorf("the connection from before the swap presents serial %v, want the old %v", after.serial, oldSerial)
	}

	// New connections, as an administrator, trusting only the CA.
	for range 3 {
		code, serial, err := freshGet(s, roots)
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET on a new connection after the swap: %d %v", code, err)
		}
		if serial.Cmp(newSerial) != 0 {
			t.Fatalf("a new connection presents serial %v, want the new %v", serial, newSerial)
		}
	}
}

// TestServingCertRotationNewCA mounts the pair as kubelet mounts a Secret
// (tls.crt -> ..data/tls.crt, ..data -> a timestamped directory) and swaps
// in a pair signed by a different CA the way kubelet updates the volume:
// a new directory, an atomic rename of the ..data symlink, and the old
// directory removed. Clients that trust only the old CA must then fail
// verification on new connections, which shows the server really reloaded;
// clients that trust the new CA succeed, and a keep-alive connection opened
// before the swap keeps working.
func TestServingCertRotationNewCA(t *testing.T) {
	p := newPKI(t)
	volume := newSecretVolume(t, p.certFile, p.keyFile)
	p.certFile, p.keyFile = volume.certFile(), volume.keyFile()
	s := startServer(t, p, dataDirArg(t.TempDir()))
	addr := strings.TrimPrefix(s.host, "https://")
	oldRoots := certPool(p.ca.CertPEM)

	oldSerial := fileSerial(t, p.certFile)
	if got, err := testcerts.Presented(addr, "", oldRoots); err != nil || got.SerialNumber.Cmp(oldSerial) != 0 {
		t.Fatalf("before the swap: presented %v (%v), want serial %v", serialOrNil(got), err, oldSerial)
	}
	kept := newKeptClient(t, s, oldRoots)
	before := kept.get(t)

	newCA, err := testcerts.NewCA("switchboard-test-ca-2")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := newCA.ServingPair([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	newSerial := pemSerial(t, pair.CertPEM)
	newRoots := certPool(newCA.CertPEM)
	swapped := time.Now()
	volume.update(t, pair)

	// Look at what new connections are given without verifying it: the
	// point is to see the moment the server switches.
	polls := waitForServingSerial(t, addr, nil, oldSerial, newSerial, kept)
	t.Logf("certificate from the new CA served %s after the swap (%d new connections)", time.Since(swapped).Round(time.Millisecond), polls)

	// A client that trusts only the old CA now refuses new connections.
	_, err = testcerts.Presented(addr, "", oldRoots)
	var unknownAuthority x509.UnknownAuthorityError
	if !errors.As(err, &unknownAuthority) {
		t.Errorf("new connection trusting only the old CA: err = %v, want an unknown-authority error", err)
	}
	if code, _, err := freshGet(s, oldRoots); err == nil {
		t.Errorf("GET on a new connection trusting only the old CA succeeded (%d)", code)
	}

	// One that trusts the new CA gets through, as an administrator (the
	// client CA did not change).
	code, serial, err := freshGet(s, newRoots)
	if err != nil || code != http.StatusOK || serial.Cmp(newSerial) != 0 {
		t.Errorf("GET on a new connection trusting the new CA: %d, serial %v (want %v), %v", code, serial, newSerial, err)
	}

	// The connection negotiated before the swap still carries requests.
	after := kept.get(t)
	if after.local != before.local || !after.reused || after.serial.Cmp(oldSerial) != 0 {
		t.Errorf("keep-alive request after the swap: connection %s (reused %v, serial %v), want %s with serial %v",
			after.local, after.reused, after.serial, before.local, oldSerial)
	}
}

// waitForServingSerial makes a new TLS connection every 200ms until the
// server presents newSerial, and returns how many it made. With roots, every
// connection must verify; every one must present the old or the new
// certificate. kept is used now and then, so the server does not close it
// as idle (after 90s) during a slow reload.
func waitForServingSerial(t *testing.T, addr string, roots *x509.CertPool, oldSerial, newSerial *big.Int, kept *keptClient) int {
	t.Helper()
	deadline := time.Now().Add(rotationTimeout)
	lastKept := time.Now()
	for polls := 1; ; polls++ {
		cert, err := testcerts.Presented(addr, "", roots)
		switch {
		case err != nil:
			t.Fatalf("new connection %d during the rotation failed: %v", polls, err)
		case cert.SerialNumber.Cmp(newSerial) == 0:
			return polls
		case cert.SerialNumber.Cmp(oldSerial) != 0:
			t.Fatalf("new connection %d presents serial %v, neither the old %v nor the new %v", polls, cert.SerialNumber, oldSerial, newSerial)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server still presents the old certificate %s after the files were replaced", rotationTimeout)
		}
		if time.Since(lastKept) > 20*time.Second {
			kept.get(t)
			lastKept = time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// freshGet lists Clusters as an administrator over a connection of its own,
// trusting roots, and returns the answer's code and the serving serial.
func freshGet(s *testServer, roots *x509.CertPool) (int, *big.Int, error) {
	transport := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{adminCert(s.t, s.pki)}, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
		DisableKeepAlives: true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	resp, err := client.Get(s.host + clustersPath)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber, nil
}

// keptClient holds one keep-alive (HTTP/2) connection to the server.
type keptClient struct {
	client *http.Client
	host   string
}

// keptAnswer says which connection a request went over.
type keptAnswer struct {
	local  string // the client's address of the connection
	reused bool
	serial *big.Int // what the server presented when the connection was made
}

func newKeptClient(t *testing.T, s *testServer, roots *x509.CertPool) *keptClient {
	transport := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{adminCert(t, s.pki)}, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(transport.CloseIdleConnections)
	return &keptClient{client: &http.Client{Transport: transport, Timeout: 30 * time.Second}, host: s.host}
}

// get lists Clusters and fails the test unless the answer is 200.
func (k *keptClient) get(t *testing.T) keptAnswer {
	t.Helper()
	var answer keptAnswer
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		answer.local = info.Conn.LocalAddr().String()
		answer.reused = info.Reused
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, k.host+clustersPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		t.Fatalf("GET over the keep-alive connection: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET over the keep-alive connection: %d", resp.StatusCode)
	}
	answer.serial = resp.TLS.PeerCertificates[0].SerialNumber
	return answer
}

// secretVolume lays out a serving pair as kubelet mounts a Secret:
// dir/tls.crt -> ..data/tls.crt, dir/..data -> ..<timestamp>/.
type secretVolume struct {
	dir     string
	current string // the timestamped directory ..data points to
}

func newSecretVolume(t *testing.T, certFile, keyFile string) *secretVolume {
	t.Helper()
	v := &secretVolume{dir: t.TempDir()}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	v.update(t, &testcerts.Pair{CertPEM: certPEM, KeyPEM: keyPEM})
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(v.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func (v *secretVolume) certFile() string { return filepath.Join(v.dir, "tls.crt") }
func (v *secretVolume) keyFile() string  { return filepath.Join(v.dir, "tls.key") }

// update writes the pair to a new timestamped directory, points ..data at it
// with one rename, and removes the previous directory, as kubelet's atomic
// writer does.
func (v *secretVolume) update(t *testing.T, pair *testcerts.Pair) {
	t.Helper()
	next, err := os.MkdirTemp(v.dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05.")) // ..2026_11_23_14_00_00.123456789
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pair.Write(next, "tls"); err != nil {
		t.Fatal(err)
	}
	tmpLink := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(next), tmpLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpLink, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if v.current != "" {
		if err := os.RemoveAll(v.current); err != nil {
			t.Fatal(err)
		}
	}
	v.current = next
}

func adminCert(t *testing.T, p *pki) tls.Certificate {
	t.Helper()
	pair, err := p.ca.ClientPair("admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func certPool(pems ...[]byte) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, p := range pems {
		pool.AppendCertsFromPEM(p)
	}
	return pool
}

func fileSerial(t *testing.T, path string) *big.Int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return pemSerial(t, data)
}

func pemSerial(t *testing.T, data []byte) *big.Int {
	t.Helper()
	serial, err := testcerts.Serial(data)
	if err != nil {
		t.Fatal(err)
	}
	return serial
}

func serialOrNil(c *x509.Certificate) fmt.Stringer {
	if c == nil {
		return (*big.Int)(nil)
	}
	return c.SerialNumber
}

func mustRenameOver(t *testing.T, path string, content []byte) {
	t.Helper()
	if err := testcerts.RenameOver(path, content); err != nil {
		t.Fatal(err)
	}
}
