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

import "testing"

// The one reader of an upgrade's status line.
func TestStatusCode(t *testing.T) {
	for line, want := range map[string]int{
		"HTTP/1.1 101 Switching Protocols": 101,
		"HTTP/1.1 401 Unauthorized":        401,
		"HTTP/1.0 403":                     403,
		"HTTP/1.1 abc Nonsense":            0,
		"HTTP/1.1 99 Too low":              0,
		"SSH-2.0-OpenSSH":                  0,
		"":                                 0,
	} {
		if got := statusCode([]byte(line)); got != want {
			t.Errorf("statusCode(%q) = %d, want %d", line, got, want)
		}
	}
}
