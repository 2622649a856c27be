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

// Package validation checks Cluster objects and says which fields to fix.
package validation

import (
	"errors"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/identity"
)

// maxKubernetesVersionLength bounds status.kubernetesVersion; real gitVersions
// are a few dozen characters.
const maxKubernetesVersionLength = 256

// proxySchemes are the proxy URL schemes client-go's transport can dial through.
var proxySchemes = []string{"http", "https", "socks5"}

// connections are the values of spec.connection.
var connections = []cluster.Connection{cluster.ConnectionDirect, cluster.ConnectionTunnel}

// ValidateClusterName checks a Cluster name: a DNS-1123 subdomain, as for
// most Kubernetes objects. It is the name users put in the proxy path.
var ValidateClusterName = apimachineryvalidation.NameIsDNSSubdomain

// ValidateCluster checks a new Cluster.
func ValidateCluster(c *cluster.Cluster) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&c.ObjectMeta, false, ValidateClusterName, field.NewPath("metadata"))
	allErrs = append(allErrs, ValidateClusterSpec(&c.Spec, field.NewPath("spec"))...)
	allErrs = append(allErrs, validateIdentity(c.Spec.Identity, nil, field.NewPath("spec", "identity"))...)
	return allErrs
}

// ValidateClusterUpdate checks an update of a Cluster's metadata and spec.
// Every spec field may change: a member can move to a new address or
// credential without being removed and added again.
func ValidateClusterUpdate(newCluster, oldCluster *cluster.Cluster) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newCluster.ObjectMeta, &oldCluster.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, ValidateClusterSpec(&newCluster.Spec, field.NewPath("spec"))...)
	allErrs = append(allErrs, validateIdentity(newCluster.Spec.Identity, oldCluster.Spec.Identity, field.NewPath("spec", "identity"))...)
	return allErrs
}

// validateIdentity compiles a Cluster's identity policy as it is written:
// with only what every API server of this version's compatibility range
// knows, unless it is the policy already stored, which an update of
// something else must not be refused for.
func validateIdentity(policy, old *cluster.IdentityPolicy, fldPath *field.Path) field.ErrorList {
	if policy == nil {
		return nil
	}
	mode := identity.NewExpressions
	if old != nil && apiequality.Semantic.DeepEqual(policy, old) {
		mode = identity.StoredExpressions
	}
	_, errs := identity.CompileIn(mode, identity.FromInternal(policy), fldPath)
	return errs
}

// ValidateClusterStatusUpdate checks an update through the status subresource.
func ValidateClusterStatusUpdate(newCluster, oldCluster *cluster.Cluster) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newCluster.ObjectMeta, &oldCluster.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, ValidateClusterStatus(&newCluster.Status, field.NewPath("status"))...)
	return allErrs
}

// ValidateClusterSpec checks every field of a ClusterSpec.
func ValidateClusterSpec(spec *cluster.ClusterSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	switch spec.Connection {
	case cluster.ConnectionDirect:
	case cluster.ConnectionTunnel:
		if spec.ProxyURL != "" {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child("proxyURL"),
				"must be empty when connection is Tunnel: the member's switchboard-agent connects out to the hub, and switchboard dials no proxy"))
		}
		if spec.InsecureSkipTLSVerify {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child("insecureSkipTLSVerify"),
				"must be false when connection is Tunnel: the agent relays switchboard's TLS connection to the member, and only verifying the member's certificate keeps whoever holds the agent's credential from reading it; put the member's CA bundle in the credentials Secret under \"ca.crt\""))
		}
	default:
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("connection"), spec.Connection, connections))
	}
	allErrs = append(allErrs, ValidateEndpoint(spec.Endpoint, fldPath.Child("endpoint"))...)
	allErrs = append(allErrs, validateSecretReference(&spec.CredentialsSecretRef, fldPath.Child("credentialsSecretRef"))...)
	if spec.TLSServerName != "" {
		allErrs = append(allErrs, validateHostName(spec.TLSServerName, spec.TLSServerName, fldPath.Child("tlsServerName"))...)
	}
	if spec.ProxyURL != "" {
		allErrs = append(allErrs, validateProxyURL(spec.ProxyURL, fldPath.Child("proxyURL"))...)
	}
	return allErrs
}

// ValidateClusterStatus checks a ClusterStatus.
func ValidateClusterStatus(status *cluster.ClusterStatus, fldPath *field.Path) field.ErrorList {
	allErrs := metav1validation.ValidateConditions(status.Conditions, fldPath.Child("conditions"))
	if len(status.KubernetesVersion) > maxKubernetesVersionLength {
		allErrs = append(allErrs, field.TooLong(fldPath.Child("kubernetesVersion"), "", maxKubernetesVersionLength))
	}
	if status.ProbeLatency != nil && status.ProbeLatency.Duration < 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("probeLatency"), status.ProbeLatency.Duration.String(), "must not be negative"))
	}
	return allErrs
}

// WarningsForCluster returns the warnings a client sees when it writes a
// Cluster that is valid but probably not what the user wants.
func WarningsForCluster(c *cluster.Cluster) []string {
	var warnings []string
	spec := field.NewPath("spec")
	if c.Spec.InsecureSkipTLSVerify {
		warnings = append(warnings, spec.Child("insecureSkipTLSVerify").String()+
			": the member's serving certificate is not verified, so the connection to it can be intercepted; put the member's CA bundle in the credentials Secret under \"ca.crt\" instead")
		if c.Spec.TLSServerName != "" {
			warnings = append(warnings, spec.Child("tlsServerName").String()+
				": has no effect while insecureSkipTLSVerify is true")
		}
	}
	return warnings
}

// ValidateEndpoint checks a member endpoint: an https URL with a host, and
// no user info, query or fragment.
func ValidateEndpoint(value string, fldPath *field.Path) field.ErrorList {
	if value == "" {
		return field.ErrorList{field.Required(fldPath, "the https URL of the member's API server, for example https://10.0.0.12:6443")}
	}
	u, errs := parseURL(value, "https", fldPath)
	if errs != nil {
		return errs
	}
	var allErrs field.ErrorList
	if u.Scheme != "https" {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), "must use the https scheme"))
	}
	if u.User != nil {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(),
			"must not contain user info: put the member credential in the Secret that credentialsSecretRef names"))
	}
	allErrs = append(allErrs, validateURLHostAndExtras(u, value, fldPath)...)
	return allErrs
}

func validateProxyURL(value string, fldPath *field.Path) field.ErrorList {
	u, errs := parseURL(value, "http", fldPath)
	if errs != nil {
		return errs
	}
	var allErrs field.ErrorList
	if !slices.Contains(proxySchemes, u.Scheme) {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), "must use one of the schemes "+strings.Join(proxySchemes, ", ")))
	}
	if u.User != nil {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(),
			"must not contain user info: Cluster objects are readable by everyone who may list them, so they carry no credentials"))
	}
	if u.Path != "" && u.Path != "/" {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), "must not contain a path"))
	}
	allErrs = append(allErrs, validateURLHostAndExtras(u, value, fldPath)...)
	return allErrs
}

// parseURL parses an absolute URL, or explains why the value is not one;
// scheme is the one its examples show.
func parseURL(value, scheme string, fldPath *field.Path) (*url.URL, field.ErrorList) {
	if !strings.Contains(value, "://") {
		// host:port without a scheme reads as a relative path or an opaque
		// URL, and url.Parse's complaint about either does not help.
		example, shown := scheme+"://host:6443", value
		if at := strings.LastIndex(value, "@"); at >= 0 {
			shown = "redacted@" + value[at+1:]
		} else if !strings.ContainsAny(value, "/?# ") {
			example = scheme + "://" + value
		}
		return nil, field.ErrorList{field.Invalid(fldPath, shown, "must be a URL with a scheme, such as "+example)}
	}
	u, err := url.Parse(value)
	if err != nil {
		// url.Error repeats the whole value; keep only the reason.
		reason := err.Error()
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			reason = urlErr.Err.Error()
		}
		return nil, field.ErrorList{field.Invalid(fldPath, redactUnparsed(value), "must be a valid URL: "+reason)}
	}
	if u.Scheme == "" || u.Opaque != "" || u.Host == "" {
		return nil, field.ErrorList{field.Invalid(fldPath, u.Redacted(), "must be an absolute URL with a scheme and a host, such as "+scheme+"://host:6443")}
	}
	return u, nil
}

// validateURLHostAndExtras checks the host and port of a URL and that it has
// no query or fragment. raw is the URL as written, which still shows an empty
// fragment that parsing drops.
func validateURLHostAndExtras(u *url.URL, raw string, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	host := u.Hostname()
	if host == "" {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), "must contain a host"))
	} else {
		allErrs = append(allErrs, validateHostName(host, u.Redacted(), fldPath)...)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), "port must be a number from 1 to 65535"))
		}
	} else if strings.HasSuffix(u.Host, ":") {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), "port must be a number from 1 to 65535"))
	}
	if u.RawQuery != "" || u.ForceQuery {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), "must not contain a query"))
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), "must not contain a fragment"))
	}
	return allErrs
}

// validateHostName accepts an IP address or a DNS name (in any letter case).
func validateHostName(host string, shown any, fldPath *field.Path) field.ErrorList {
	if net.ParseIP(host) != nil {
		return nil
	}
	if msgs := utilvalidation.IsDNS1123Subdomain(strings.ToLower(host)); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(fldPath, shown, "host must be an IP address or a DNS name: "+strings.Join(msgs, "; "))}
	}
	return nil
}

func validateSecretReference(ref *cluster.SecretReference, fldPath *field.Path) field.ErrorList {
	namePath := fldPath.Child("name")
	if ref.Name == "" {
		return field.ErrorList{field.Required(namePath, "the name of the Secret in switchboard's namespace that holds the member credential")}
	}
	var allErrs field.ErrorList
	for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(ref.Name, false) {
		allErrs = append(allErrs, field.Invalid(namePath, ref.Name, msg))
	}
	return allErrs
}

// redactUnparsed hides what could be a password in a string that did not
// parse as a URL, so that error messages never echo a credential.
func redactUnparsed(value string) string {
	scheme, rest, found := strings.Cut(value, "://")
	if !found {
		return value
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return value
	}
	if slash := strings.Index(rest, "/"); slash >= 0 && slash < at {
		return value
	}
	return scheme + "://redacted@" + rest[at+1:]
}
