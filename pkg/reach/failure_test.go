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
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"
)

// timeoutError is a net.Error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func urlError(err error) error {
	return &url.Error{Op: "Get", URL: "https://member.example:6443/readyz", Err: err}
}

func dial(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want Failure
	}{
		{"DNS", urlError(dial(&net.DNSError{Err: "no such host", Name: "member.example", IsNotFound: true})), DNS},
		{"connection refused", urlError(dial(&os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED})), Refused},
		{"bare ECONNREFUSED", syscall.ECONNREFUSED, Refused},
		{"unknown authority", urlError(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), TLS},
		{"certificate verification", urlError(&tls.CertificateVerificationError{Err: errors.New("x509: certificate signed by unknown authority")}), TLS},
		{"bare unknown authority", x509.UnknownAuthorityError{}, TLS},
		{"not TLS on the other end", urlError(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), TLS},
		{"wrong host name", urlError(x509.HostnameError{Host: "member.example"}), TLS},
		{"expired certificate", urlError(x509.CertificateInvalidError{Reason: x509.Expired}), TLS},
		{"connection reset", urlError(&net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}), Reset},
		{"cut off mid-answer", fmt.Errorf("reading the body: %w", io.ErrUnexpectedEOF), Reset},
		{"context deadline", context.DeadlineExceeded, Timeout},
		{"wrapped deadline", fmt.Errorf("probing: %w", urlError(context.DeadlineExceeded)), Timeout},
		{"net.Error timeout", urlError(dial(timeoutError{})), Timeout},
		{"os deadline", urlError(os.ErrDeadlineExceeded), Timeout},
		{"no agent", urlError(dial(&NoAgentError{Cluster: "edge1", Since: time.Unix(0, 0)})), NoAgent},
		{"other transport failure", urlError(errors.New("EOF")), Other},
		{"plain error", errors.New("something"), Other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}

func TestEveryFailureHasItsOwnHint(t *testing.T) {
	seen := map[string]Failure{}
	for _, f := range []Failure{DNS, Refused, Reset, TLS, Timeout, NoAgent, Other} {
		hint := f.Hint()
		if other, ok := seen[hint]; ok || hint == "" {
			t.Errorf("%s and %s share the hint %q", f, other, hint)
		}
		seen[hint] = f
	}
}
