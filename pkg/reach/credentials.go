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
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// CredentialsError means a Cluster's credentials Secret is missing or
// unusable. Its message names the Secret and what is wrong with it, and
// never holds the Secret's data.
type CredentialsError struct {
	// Cluster is the Cluster's name.
	Cluster string
	// Secret is the Secret's namespace/name.
	Secret string
	// Reason completes "its credentials Secret <Secret> ...": "does not
	// exist", or "is not usable: ...".
	Reason string
}

func (e *CredentialsError) Error() string {
	return fmt.Sprintf("cluster %q cannot be reached: its credentials Secret %s %s", e.Cluster, e.Secret, e.Reason)
}

// CredentialsProblem says whether err means the Cluster's credentials
// Secret is unusable, and returns the explanation.
func CredentialsProblem(err error) (string, bool) {
	var cerr *CredentialsError
	if errors.As(err, &cerr) {
		return cerr.Error(), true
	}
	return "", false
}

// credentials is what switchboard presents to one member: a bearer token or
// a client certificate, and the CA bundle to verify the member with.
type credentials struct {
	token      string
	clientCert *tls.Certificate
	caPool     *x509.CertPool
	// raw keeps the bytes the transport is built from, for its fingerprint.
	raw map[string][]byte
}

// credentialsFromSecret reads and checks a credentials Secret. Its errors
// say what is wrong in words an administrator can act on, and never contain
// the Secret's data.
func credentialsFromSecret(secret *corev1.Secret, insecureSkipTLSVerify bool) (*credentials, error) {
	c := &credentials{raw: map[string][]byte{}}
	data := secret.Data
	token := strings.TrimSpace(string(data[v1alpha1.SecretKeyToken]))
	certPEM, keyPEM := data[v1alpha1.SecretKeyClientCert], data[v1alpha1.SecretKeyClientKey]

	var problems []string
	switch {
	case token != "" && (len(certPEM) > 0 || len(keyPEM) > 0):
		problems = append(problems, fmt.Sprintf("it holds both %q and a client certificate; keep one", v1alpha1.SecretKeyToken))
	case token != "":
		if strings.ContainsAny(token, "\r\n") {
			problems = append(problems, fmt.Sprintf("%q spans several lines; it must be one bearer token", v1alpha1.SecretKeyToken))
		}
		c.token = token
		c.raw[v1alpha1.SecretKeyToken] = []byte(token)
	case len(certPEM) > 0 || len(keyPEM) > 0:
		if len(certPEM) == 0 || len(keyPEM) == 0 {
			problems = append(problems, fmt.Sprintf("a client certificate needs both %q and %q", v1alpha1.SecretKeyClientCert, v1alpha1.SecretKeyClientKey))
			break
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%q and %q are not a valid certificate and key pair (%s)",
				v1alpha1.SecretKeyClientCert, v1alpha1.SecretKeyClientKey, pairProblem(err)))
			break
		}
		c.clientCert = &pair
		c.raw[v1alpha1.SecretKeyClientCert] = certPEM
		c.raw[v1alpha1.SecretKeyClientKey] = keyPEM
	default:
		problems = append(problems, fmt.Sprintf("it holds no credential: set %q, or %q and %q",
			v1alpha1.SecretKeyToken, v1alpha1.SecretKeyClientCert, v1alpha1.SecretKeyClientKey))
	}

	caPEM := data[v1alpha1.SecretKeyCABundle]
	switch {
	case len(caPEM) > 0:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			problems = append(problems, fmt.Sprintf("%q holds no PEM certificate", v1alpha1.SecretKeyCABundle))
		}
		c.caPool = pool
		c.raw[v1alpha1.SecretKeyCABundle] = caPEM
	case !insecureSkipTLSVerify:
		problems = append(problems, fmt.Sprintf("%q is missing: it must hold the CA bundle of the member's serving certificate", v1alpha1.SecretKeyCABundle))
	}

	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return c, nil
}

// pairProblem turns a crypto/tls error into a short reason without key material.
func pairProblem(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "private key does not match public key"):
		return "the key does not belong to the certificate"
	case strings.Contains(msg, "failed to find any PEM data in certificate"):
		return "the certificate is not PEM"
	case strings.Contains(msg, "failed to find any PEM data in key"), strings.Contains(msg, "failed to find PEM block with type ending in \"PRIVATE KEY\""):
		return "the key is not PEM"
	default:
		return "they could not be parsed"
	}
}
