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

package proxy

import (
	"context"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/test/testcerts"
)

// pemBody is the base64 body of a PEM block: what must never leak.
func pemBody(p []byte) []string {
	var lines []string
	for _, line := range strings.Split(string(p), "\n") {
		if line != "" && !strings.HasPrefix(line, "-----") {
			lines = append(lines, line)
		}
	}
	return lines
}

func TestCredentialsErrors(t *testing.T) {
	ca, err := testcerts.NewCA("client CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.ClientPair("switchboard")
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.ClientPair("someone-else")
	if err != nil {
		t.Fatal(err)
	}
	const multiline = "sb-first-half-91c2\nsb-second-half-4d0e"
	secrets := []string{testToken, "sb-first-half-91c2", "sb-second-half-4d0e"}
	secrets = append(secrets, pemBody(pair.KeyPEM)...)
	secrets = append(secrets, pemBody(other.KeyPEM)...)

	mem := newMember(t, nil)
	caPEM := mem.caPEM()
	cases := []struct {
		name string
		// data is nil for a missing Secret.
		data map[string][]byte
		want string
	}{
		{"Secret missing", nil, "does not exist"},
		{"neither token nor certificate", map[string][]byte{"ca.crt": caPEM}, "holds no credential"},
		{"empty token", map[string][]byte{"token": []byte(" \n"), "ca.crt": caPEM}, "holds no credential"},
		{"certificate without key", map[string][]byte{"tls.crt": pair.CertPEM, "ca.crt": caPEM}, `needs both "tls.crt" and "tls.key"`},
		{"key without certificate", map[string][]byte{"tls.key": pair.KeyPEM, "ca.crt": caPEM}, `needs both "tls.crt" and "tls.key"`},
		{"key of another certificate", map[string][]byte{"tls.crt": pair.CertPEM, "tls.key": other.KeyPEM, "ca.crt": caPEM}, "the key does not belong to the certificate"},
		{"certificate not PEM", map[string][]byte{"tls.crt": []byte("not a certificate"), "tls.key": pair.KeyPEM, "ca.crt": caPEM}, "the certificate is not PEM"},
		{"key not PEM", map[string][]byte{"tls.crt": pair.CertPEM, "tls.key": []byte("not a key"), "ca.crt": caPEM}, "the key is not PEM"},
		{"token and certificate", map[string][]byte{"token": []byte(testToken), "tls.crt": pair.CertPEM, "tls.key": pair.KeyPEM, "ca.crt": caPEM}, "holds both"},
		{"token on several lines", map[string][]byte{"token": []byte(multiline), "ca.crt": caPEM}, "spans several lines"},
		{"ca.crt not PEM", map[string][]byte{"token": []byte(testToken), "ca.crt": []byte("not a bundle")}, `"ca.crt" holds no PEM certificate`},
		{"ca.crt is a key", map[string][]byte{"token": []byte(testToken), "ca.crt": pair.KeyPEM}, `"ca.crt" holds no PEM certificate`},
		{"ca.crt missing", map[string][]byte{"token": []byte(testToken)}, `"ca.crt" is missing`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.putCluster(t, newCluster(testCluster, mem.srv.URL))
			if tc.data != nil {
				f.putSecret(t, newSecret(secretName(testCluster), tc.data))
			}
			before := len(mem.requests())

			_, err := f.connect(context.Background(), testCluster, "/api", &recordingResponder{})

			if err == nil {
				t.Fatal("Connect succeeded")
			}
			status := statusOf(t, err)
			checkStatus(t, status, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, testCluster,
				testNamespace+"/"+secretName(testCluster), tc.want)
			// Waiting does not mend a Secret: no Retry-After, so clients
			// do not retry in vain.
			if status.Details != nil && status.Details.RetryAfterSeconds != 0 {
				t.Errorf("Retry-After for a broken Secret: %+v", status.Details)
			}
			for _, s := range secrets {
				if strings.Contains(status.Message, s) || strings.Contains(err.Error(), s) {
					t.Errorf("the error %q contains Secret data %q", status.Message, s)
				}
			}
			if got := len(mem.requests()); got != before {
				t.Errorf("the member was contacted")
			}
			if b := f.transports.Builds(); b != 0 {
				t.Errorf("Builds() = %d, want 0", b)
			}
		})
	}
}

func TestInsecureSkipTLSVerifyWithoutCA(t *testing.T) {
	mem := newMember(t, nil)
	f := newFixture(t)
	f.putSecret(t, newSecret(secretName(testCluster), map[string][]byte{v1alpha1.SecretKeyToken: []byte(testToken)}))
	cl := newCluster(testCluster, mem.srv.URL)
	cl.Spec.InsecureSkipTLSVerify = true
	f.putCluster(t, cl)

	f.get(t)

	checkIdentity(t, mem.only(t), withToken(aliceAtTheMember(), testToken))
}

// Without insecureSkipTLSVerify, a ca.crt that does not sign the member's
// certificate means no connection.
func TestWrongCAIsRefused(t *testing.T) {
	mem := newMember(t, nil)
	otherCA, err := testcerts.NewCA("some other CA")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.putSecret(t, newSecret(secretName(testCluster), map[string][]byte{
		v1alpha1.SecretKeyToken:    []byte(testToken),
		v1alpha1.SecretKeyCABundle: otherCA.CertPEM,
	}))
	f.putCluster(t, newCluster(testCluster, mem.srv.URL))

	rec, responder := f.serve(t, testCluster, "/api", newProxyRequest(http.MethodGet, testCluster, "/api", "", nil, alice))

	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("code = %d, want 503", rec.Code)
	}
	checkStatus(t, statusOf(t, responder.onlyError(t)), http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, testCluster, "certificate")
	if n := len(mem.requests()); n != 0 {
		t.Errorf("the member received %d requests over an unverified connection", n)
	}
}
