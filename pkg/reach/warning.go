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
	"net/http"
	"net/url"
	"strings"
	"unicode"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"
)

// MemberRequestInfo parses member paths as a member's kube-apiserver does.
var MemberRequestInfo = &request.RequestInfoFactory{
	APIPrefixes:          sets.NewString("api", "apis"),
	GrouplessAPIPrefixes: sets.NewString("api"),
}

// client-go reads discovery (/api, /apis/<group>/<version>, ...) and the
// OpenAPI documents with Result.Raw, which never decodes a Status: for a
// 503 it shows only "the server is currently unable to handle the
// request". Every kubectl command that needs discovery (get, apply, exec,
// ...) would hide why switchboard could not reach a member. So on those
// paths switchboard's own errors also go out as a Warning header, which
// client-go hands to kubectl's warning printer whatever the status.
// Resource requests decode the Status and need no warning.

// NeedsWarning says whether errors on a member path are read by clients
// that drop a Status's message: every path that is not a resource
// request, as the member reads it. It is asked only when a request fails.
func NeedsWarning(path string) bool {
	info, err := MemberRequestInfo.NewRequestInfo(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: path}})
	return err != nil || !info.IsResourceRequest
}

// WarningText makes message fit a Warning header, which takes no control
// characters and only valid UTF-8 (a member's error text may hold either):
// without this, the header would be dropped. strings.Map also turns bytes
// that are no UTF-8 into U+FFFD.
func WarningText(message string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, message)
}

// warningHeader is the Warning header value for message, as the API server
// writes it.
func warningHeader(message string) string {
	header, err := utilnet.NewWarningHeader(299, "-", WarningText(message))
	if err != nil {
		return ""
	}
	return header
}
