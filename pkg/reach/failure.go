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

// Package reach holds everything switchboard needs to reach a member
// cluster's API server: the pooled transports (TransportCache, Member), the
// dialers (Dialer, Dialers, Network), the credentials Secret reader, the
// identity round trippers and their guards, and the one answer to why a
// member could not be reached: the Cluster status, the proxy's metrics and
// 503s, and kubectl switchboard join all name a failure with Classify.
package reach

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// Failure is why a request to an API server got no answer.
type Failure string

// The failures Classify tells apart.
const (
	// DNS: the host name does not resolve.
	DNS Failure = "dns"
	// Refused: nothing listens at the address.
	Refused Failure = "refused"
	// Reset: the server closed the connection before it answered in full.
	Reset Failure = "reset"
	// TLS: the handshake failed, or the server's certificate was refused.
	TLS Failure = "tls"
	// Timeout: the server did not answer in time.
	Timeout Failure = "timeout"
	// NoAgent: the member is reached through a tunnel, and no agent holds one.
	NoAgent Failure = "no-agent"
	// Other is every other failure to connect or to get an answer.
	Other Failure = "other"
)

// Classify says why err, from a request that got no answer, came about.
// Every error that is none of the others is Other.
func Classify(err error) Failure {
	var dnsErr *net.DNSError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recordHeader tls.RecordHeaderError
	var certVerify *tls.CertificateVerificationError
	var netErr net.Error
	var noAgent *NoAgentError
	switch {
	case errors.As(err, &noAgent):
		return NoAgent
	case errors.As(err, &dnsErr):
		return DNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case utilnet.IsConnectionReset(err), errors.Is(err, io.ErrUnexpectedEOF):
		return Reset
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &invalid),
		errors.As(err, &recordHeader), errors.As(err, &certVerify):
		return TLS
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		// The caller's deadline, or a timeout of the connection beneath it
		// (a dial, a TLS handshake, a read) that a loaded machine hits first.
		return Timeout
	}
	return Other
}

// Hint says what the failure means, in the words an administrator looks
// for: "the connection was refused: nothing listens there".
func (f Failure) Hint() string {
	switch f {
	case DNS:
		return "its host name does not resolve"
	case Refused:
		return "the connection was refused: nothing listens there"
	case Reset:
		return "it closed the connection"
	case TLS:
		return "the TLS handshake failed or its certificate was not accepted"
	case Timeout:
		return "it did not answer in time"
	case NoAgent:
		return "no switchboard-agent is connected for it"
	}
	return "the request failed"
}
