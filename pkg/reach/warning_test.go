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
	"strings"
	"testing"
	"unicode/utf8"

	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// A member's error text may hold what a Warning header cannot carry; the
// warning must still go out.
func TestWarningHeaderOfAnyMessage(t *testing.T) {
	for _, message := range []string{
		"plain",
		"tab\there, line\r\nbreak",
		"cut mid-character: \xe2\x82",
		`quotes " and backslashes \`,
	} {
		header := warningHeader(message)
		parsed, errs := utilnet.ParseWarningHeaders([]string{header})
		if len(errs) > 0 || len(parsed) != 1 || parsed[0].Code != 299 || parsed[0].Text == "" ||
			!utf8.ValidString(parsed[0].Text) || strings.ContainsAny(parsed[0].Text, "\t\r\n") {
			t.Errorf("warningHeader(%q) = %q: %+v, %v", message, header, parsed, errs)
		}
	}
}

func TestNeedsWarning(t *testing.T) {
	for path, want := range map[string]bool{
		"/api":                          true,
		"/apis/apps/v1":                 true,
		"/openapi/v3":                   true,
		"/version":                      true,
		"/api/v1/pods":                  false,
		"/api/v1/namespaces/dev/pods/x": false,
		"/apis/apps/v1/deployments":     false,
	} {
		if got := NeedsWarning(path); got != want {
			t.Errorf("NeedsWarning(%q) = %v, want %v", path, got, want)
		}
	}
}
