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

package plugin

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// flagsBeforePlugin reports a line of help text that runs
// "kubectl <flags> switchboard": kubectl refuses flags before a plugin's
// name ("flags cannot be placed before plugin name").
func flagsBeforePlugin(text string) string {
	for _, line := range strings.Split(text, "\n") {
		words := strings.Fields(line)
		for i, w := range words {
			if w != "kubectl" {
				continue
			}
			// Walk the flags (and their values) after kubectl up to the
			// first word that is neither.
			sawFlag, value := false, false
			for _, next := range words[i+1:] {
				switch {
				case strings.HasPrefix(next, "-"):
					sawFlag = true
					value = !strings.Contains(next, "=")
					continue
				case next == "switchboard" && sawFlag:
					return line
				case value:
					value = false
					continue
				}
				break
			}
		}
	}
	return ""
}

func TestFlagsBeforePlugin(t *testing.T) {
	for text, bad := range map[string]bool{
		"  kubectl --kubeconfig hub.kubeconfig switchboard list":    true,
		"  kubectl --context=hub switchboard join member1":          true,
		"  kubectl -n x --insecure-skip-tls-verify switchboard":     true,
		"  kubectl switchboard list --kubeconfig hub.kubeconfig":    false,
		"  kubectl --kubeconfig member1.kubeconfig get nodes":       false,
		"  kubectl get --raw /apis/cluster.switchboard.io/v1alpha1": false,
		"Use kubectl switchboard join; kubectl get switchboard":     false,
	} {
		if got := flagsBeforePlugin(text) != ""; got != bad {
			t.Errorf("%q: reported %v, want %v", text, got, bad)
		}
	}
}

// Every example and description puts kubectl's flags after the plugin's
// name, where kubectl accepts them.
func TestHelpPlacesFlagsAfterThePlugin(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		for field, text := range map[string]string{"Example": cmd.Example, "Long": cmd.Long, "Use": cmd.Use} {
			if line := flagsBeforePlugin(text); line != "" {
				t.Errorf("%s's %s has flags before switchboard: %q", cmd.CommandPath(), field, line)
			}
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(NewCommand(testStreams()))
}
