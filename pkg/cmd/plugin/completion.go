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
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CompletionExecutable is what kubectl (1.26 and later) runs from the PATH
// to complete the arguments of kubectl switchboard: for
// "kubectl switchboard list -<TAB>" it runs "kubectl_complete-switchboard
// list -" and takes cobra's __complete output. make build puts it next to
// kubectl-switchboard as a symbolic link to it.
const CompletionExecutable = "kubectl_complete-switchboard"

// clusterListTimeout bounds the hub request that completes cluster names.
const clusterListTimeout = 5 * time.Second

// Args is what to run the command with, given the process's arguments
// (os.Args): the arguments after the program's name, or, when the program
// was started as CompletionExecutable, the same behind cobra's __complete.
func Args(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	name := strings.TrimSuffix(filepath.Base(argv[0]), ".exe")
	if name == CompletionExecutable {
		return append([]string{cobra.ShellCompRequestCmd}, argv[1:]...)
	}
	return argv[1:]
}

// addCompletionCommand adds cobra's completion command, saying what it is
// for: kubectl completes kubectl switchboard by itself.
func addCompletionCommand(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Long = `Run as kubectl switchboard, the plugin needs no script of its own: kubectl's
completion (kubectl completion bash|zsh|fish) completes it through the
executable ` + CompletionExecutable + ` on the PATH, which make build writes
next to kubectl-switchboard. The scripts here complete kubectl-switchboard
run by that name.

` + c.Long
		}
	}
}

// completeClusterNames completes a command's NAME argument with the names
// of the Clusters on the hub.
func completeClusterNames(hub hubFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		_, _, sb, err := hub.clients()
		if err != nil {
			cobra.CompErrorln(err.Error())
			return nil, cobra.ShellCompDirectiveError
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), clusterListTimeout)
		defer cancel()
		list, err := sb.ClusterV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
		if err != nil {
			cobra.CompErrorln(err.Error())
			return nil, cobra.ShellCompDirectiveError
		}
		var names []cobra.Completion
		for _, c := range list.Items {
			if strings.HasPrefix(c.Name, toComplete) {
				names = append(names, c.Name)
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
