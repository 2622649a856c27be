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

package join

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// UnreachableError says which address could not be used, and why, in one of
// the words an administrator looks for: DNS, refused, TLS, timeout or
// unauthorized.
type UnreachableError struct {
	// Which is "member" or "hub".
	Which   string
	Address string
	// Reason is dns, refused, tls, timeout, unauthorized, forbidden or other.
	Reason string
	Err    error
}

func (e *UnreachableError) Error() string {
	hint := map[string]string{
		"dns":          "its host name does not resolve",
		"refused":      "the connection was refused: nothing listens there",
		"tls":          "the TLS handshake failed",
		"timeout":      "it did not answer in time",
		"unauthorized": "it rejected the credentials of the kubeconfig (401)",
		"forbidden":    "the kubeconfig's identity may not do this (403)",
	}[e.Reason]
	if hint == "" {
		hint = "the request failed"
	}
	return fmt.Sprintf("the %s API server at %s cannot be used: %s: %v", e.Which, e.Address, hint, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// classify turns a failed request into an UnreachableError, or returns nil
// when the error is an answer from the server other than 401 or 403.
func classify(which, address string, err error) error {
	if err == nil {
		return nil
	}
	reason := ""
	var dnsErr *net.DNSError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recordHeader tls.RecordHeaderError
	var netErr net.Error
	switch {
	case apierrors.IsUnauthorized(err):
		reason = "unauthorized"
	case apierrors.IsForbidden(err):
		reason = "forbidden"
	case errors.As(err, &dnsErr):
		reason = "dns"
	case errors.Is(err, syscall.ECONNREFUSED):
		reason = "refused"
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &recordHeader):
		reason = "tls"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		reason = "timeout"
	default:
		var urlErr *url.Error
		if !errors.As(err, &urlErr) {
			// An answer from the server, or a problem of join's own: not
			// about reaching the server.
			return nil
		}
		reason = "other"
	}
	return &UnreachableError{Which: which, Address: address, Reason: reason, Err: err}
}
