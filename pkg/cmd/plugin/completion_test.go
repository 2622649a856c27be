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
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		argv, want []string
	}{
		{[]string{"/usr/local/bin/kubectl-switchboard", "list", "-o", "json"}, []string{"list", "-o", "json"}},
		// As kubectl runs the completion executable for
		// "kubectl switchboard list -o <TAB>".
		{[]string{"/home/u/bin/kubectl_complete-switchboard", "list", "-o", ""}, []string{"__complete", "list", "-o", ""}},
		{[]string{"kubectl_complete-switchboard", ""}, []string{"__complete", ""}},
		{[]string{"kubectl_complete-switchboard.exe", ""}, []string{"__complete", ""}},
		{[]string{"kubectl-switchboard"}, []string{}},
		{nil, nil},
	} {
		if got := Args(tc.argv); !slices.Equal(got, tc.want) {
			t.Errorf("Args(%q) = %q, want %q", tc.argv, got, tc.want)
		}
	}
}

// complete runs the completion kubectl asks the completion executable for,
// and returns the choices (without descriptions) and the directive line.
func complete(t *testing.T, run func(...string) (string, string, error), args ...string) ([]string, string) {
	t.Helper()
	stdout, stderr, err := run(append([]string{cobra.ShellCompRequestCmd}, args...)...)
	if err != nil {
		t.Fatalf("__complete %q: %v\n%s", args, err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var choices []string
	for _, line := range lines[:len(lines)-1] {
		choice, _, _ := strings.Cut(line, "\t")
		choices = append(choices, choice)
	}
	return choices, lines[len(lines)-1]
}

func TestCompletion(t *testing.T) {
	run := func(args ...string) (string, string, error) { return runPlugin(t, args...) }
	for _, tc := range []struct {
		args      []string
		want      []string
		directive string
	}{
		{[]string{""}, []string{"completion", "help", "install", "join", "kubeconfig", "list", "unjoin", "version"}, ":4"},
		{[]string{"li"}, []string{"list"}, ":4"},
		{[]string{"list", "--"}, []string{"--output", "--probe-timeout", "--template", "--kubeconfig", "--context"}, ":4"},
		{[]string{"list", "-o", ""}, []string{"wide", "json", "yaml", "name", "jsonpath", "go-template"}, ":4"},
		{[]string{"version", "-o", ""}, []string{"json", "yaml"}, ":4"},
		{[]string{"install", "--dry-run="}, []string{"none", "client", "server"}, ":4"},
		{[]string{"install", "--variant", ""}, []string{"single", "ha"}, ":4"},
		// Cobra offers a command's required flags first.
		{[]string{"join", "--"}, []string{"--member-kubeconfig"}, ""},
		{[]string{"join", "--member-kubeconfig", "m.kubeconfig", "--"}, []string{"--dry-run", "--endpoint", "--kubeconfig"}, ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			choices, directive := complete(t, run, tc.args...)
			for _, want := range tc.want {
				if !slices.Contains(choices, want) {
					t.Errorf("no %q in %q", want, choices)
				}
			}
			if tc.directive != "" && directive != tc.directive {
				t.Errorf("directive %s, want %s", directive, tc.directive)
			}
		})
	}
}

// kubeconfig NAME completes with the Clusters on the hub that
// --kubeconfig names.
func TestCompletionOfClusterNames(t *testing.T) {
	hub := newFakeHub(t)
	hub.addCluster("member1", metav1.ConditionTrue)
	hub.addCluster("member2", metav1.ConditionTrue)
	hub.addCluster("other", metav1.ConditionTrue)
	run := func(args ...string) (string, string, error) {
		// The word to complete comes last.
		return runPlugin(t, append(append([]string{args[0], args[1]}, hub.flags()...), args[2:]...)...)
	}
	choices, directive := complete(t, run, "kubeconfig", "mem")
	if !slices.Equal(choices, []string{"member1", "member2"}) || directive != ":4" {
		t.Errorf("choices %q, directive %s", choices, directive)
	}
	// NAME is the only argument.
	choices, _ = complete(t, run, "kubeconfig", "member1", "")
	if len(choices) != 0 {
		t.Errorf("a second argument completes with %q", choices)
	}
}

// The completion scripts are for the executable's name; under kubectl the
// help shows the name kubectl runs it by.
func TestCompletionScriptsAndNames(t *testing.T) {
	stdout, _, err := runPlugin(t, "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "complete -o default -F __start_kubectl-switchboard kubectl-switchboard") {
		t.Errorf("the bash script does not complete kubectl-switchboard:\n%s", stdout[:min(len(stdout), 400)])
	}
	stdout, _, err = runPlugin(t, "completion", "--help")
	if err != nil || !strings.Contains(stdout, CompletionExecutable) {
		t.Errorf("completion --help does not name %s: %v\n%s", CompletionExecutable, err, stdout)
	}
	stdout, _, err = runPlugin(t, "list", "--help")
	if err != nil || !strings.Contains(stdout, "kubectl switchboard list [") {
		t.Errorf("list --help: %v\n%s", err, stdout)
	}
}
