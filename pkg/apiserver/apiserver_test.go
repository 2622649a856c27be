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

package apiserver

import (
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/server"
)

// Without a secure port there is no loopback client to read Clusters with:
// a clear error, not a panic.
func TestCompleteWithoutALoopbackClient(t *testing.T) {
	cfg := &Config{GenericConfig: server.NewRecommendedConfig(Codecs)}
	cfg.GenericConfig.LoopbackClientConfig = nil
	if _, err := cfg.Complete(); err == nil || !strings.Contains(err.Error(), "secure port") {
		t.Errorf("Complete() = %v, want an error about the secure port", err)
	}
}
