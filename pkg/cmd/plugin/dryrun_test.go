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
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDryRunFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    dryRunStrategy
		warning string
		err     string
	}{
		{args: nil, want: dryRunNone},
		{args: []string{"--dry-run=none"}, want: dryRunNone},
		{args: []string{"--dry-run=client"}, want: dryRunClient},
		{args: []string{"--dry-run=server"}, want: dryRunServer},
		{args: []string{"--dry-run"}, want: dryRunClient, warning: "Warning: --dry-run is deprecated and can be replaced with --dry-run=client.\n"},
		{args: []string{"--dry-run=true"}, want: dryRunClient, warning: "Warning: --dry-run=true is deprecated (boolean value) and can be replaced with --dry-run=client.\n"},
		{args: []string{"--dry-run=false"}, want: dryRunNone, warning: "Warning: --dry-run=false is deprecated (boolean value) and can be replaced with --dry-run=none.\n"},
		// A bare --dry-run takes no separate value, as in kubectl.
		{args: []string{"--dry-run", "server"}, want: dryRunClient, warning: "Warning: --dry-run is deprecated and can be replaced with --dry-run=client.\n"},
		{args: []string{"--dry-run=Server"}, err: `invalid argument "Server" for "--dry-run" flag: must be "none", "server", or "client", not "Server"`},
		{args: []string{"--dry-run="}, err: `must be "none", "server", or "client", not ""`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var got dryRunStrategy = -1
			var stderr bytes.Buffer
			cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }, SilenceErrors: true, SilenceUsage: true}
			addDryRunFlag(cmd, &got, "")
			cmd.SetErr(&stderr)
			cmd.SetArgs(tc.args)
			err := cmd.Execute()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || stderr.String() != tc.warning {
				t.Errorf("strategy %s, warning %q; want %s, %q", got, stderr.String(), tc.want, tc.warning)
			}
		})
	}
}

func TestDryRunStrategy(t *testing.T) {
	for s, want := range map[dryRunStrategy]struct {
		name, suffix string
		api          []string
	}{
		dryRunNone:   {"none", "", nil},
		dryRunClient: {"client", " (dry run)", nil},
		dryRunServer: {"server", " (server dry run)", []string{metav1.DryRunAll}},
	} {
		if s.String() != want.name || s.suffix() != want.suffix || !slices.Equal(s.apiDryRun(), want.api) {
			t.Errorf("%d: %q %q %v", s, s.String(), s.suffix(), s.apiDryRun())
		}
		// Each strategy's name selects it.
		if parsed, warning, err := parseDryRun(s.String()); parsed != s || warning != "" || err != nil {
			t.Errorf("parseDryRun(%q) = %s, %q, %v", s, parsed, warning, err)
		}
	}
}

// The commands that change things take kubectl's --dry-run.
func TestCommandsTakeKubectlDryRun(t *testing.T) {
	root := NewCommand(testStreams())
	for _, name := range []string{"install", "join", "unjoin"} {
		cmd, _, err := root.Find([]string{name})
		if err != nil {
			t.Fatal(err)
		}
		flag := cmd.Flags().Lookup("dry-run")
		if flag == nil || flag.DefValue != "none" || flag.NoOptDefVal != dryRunBare || !strings.Contains(flag.Usage, `"none", "server", or "client"`) {
			t.Errorf("%s --dry-run: %+v", name, flag)
		}
	}
}
