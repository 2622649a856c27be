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

package server

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
)

// parse returns fresh defaults with args applied through the real flags.
func parse(t *testing.T, args ...string) *Options {
	t.Helper()
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	for _, set := range o.Flags().FlagSets {
		fs.AddFlagSet(set)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parsing %v: %v", args, err)
	}
	return o
}

func TestDefaultsAreValid(t *testing.T) {
	o := parse(t)
	if err := o.Complete(); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		// want holds one substring per error expected, each naming the flag to fix.
		want []string
	}{
		{"credentials namespace", []string{"--cluster-credentials-namespace=Not_A_Namespace"}, []string{`--cluster-credentials-namespace "Not_A_Namespace"`}},
		{"dial timeout", []string{"--member-dial-timeout=0"}, []string{"--member-dial-timeout must be positive"}},
		{"tunnel keepalive", []string{"--tunnel-keepalive-timeout=0"}, []string{"--tunnel-keepalive-interval and --tunnel-keepalive-timeout must be positive"}},
		{"probe interval", []string{"--cluster-probe-interval=-1s"}, []string{"--cluster-probe-interval, --cluster-probe-timeout and --cluster-status-heartbeat must be positive"}},
		{"probe workers", []string{"--cluster-probe-workers=0"}, []string{"--cluster-probe-workers must be at least 1"}},
		{"renew not shorter than lease", []string{"--leader-elect-lease-duration=5s", "--leader-elect-renew-deadline=5s"},
			[]string{"--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration"}},
		{"renew within jitter of retry", []string{"--leader-elect-retry-period=9s"}, []string{"--leader-elect-renew-deadline must be more than 1.2 times --leader-elect-retry-period"}},
		{"lock kind", []string{"--leader-elect-resource-lock=configmaps"}, []string{"--leader-elect-resource-lock must be leases"}},
		{"lease name", []string{"--leader-elect-resource-name="}, []string{"--leader-elect-resource-name and --leader-elect-resource-namespace must not be empty"}},
		{"leader election off skips its checks", []string{"--leader-elect=false", "--leader-elect-resource-lock=configmaps"}, nil},
		{"embedded etcd data dir", []string{"--data-dir="}, []string{"--data-dir must be set when --etcd-servers is empty"}},
		{"embedded etcd quota", []string{"--embedded-etcd-quota-backend-bytes=-1"}, []string{"--embedded-etcd-quota-backend-bytes must not be negative"}},
		{"etcd TLS without etcd servers", []string{"--etcd-cafile=/ca.crt", "--etcd-certfile=/c.crt"},
			[]string{"--etcd-cafile only applies with --etcd-servers", "--etcd-certfile only applies with --etcd-servers"}},
		{"external etcd ignores the embedded checks", []string{"--etcd-servers=https://etcd:2379", "--data-dir="}, nil},
		{"every error at once", []string{"--member-dial-timeout=0", "--cluster-probe-workers=0", "--data-dir=", "--leader-elect-resource-lock=configmaps"},
			[]string{"--member-dial-timeout", "--cluster-probe-workers", "--data-dir", "--leader-elect-resource-lock"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := parse(t, tc.args...)
			if err := o.Complete(); err != nil {
				t.Fatalf("Complete: %v", err)
			}
			err := o.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want no error", err)
				}
				return
			}
			var agg utilerrors.Aggregate
			if !errors.As(err, &agg) {
				t.Fatalf("Validate() = %v (%T), want an aggregate of %d errors", err, err, len(tc.want))
			}
			if got := len(agg.Errors()); got != len(tc.want) {
				t.Errorf("Validate() gave %d errors, want %d: %v", got, len(tc.want), err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to say %q", err, want)
				}
			}
		})
	}
}

// The command refuses positional arguments before doing anything.
func TestCommandTakesNoArguments(t *testing.T) {
	cmd := NewCommand(context.Background())
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"serve"})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "does not take any arguments") {
		t.Errorf("Execute(serve) = %v, want a refusal of the argument", err)
	}
}

// --help lists the flags in their named sections.
func TestHelpShowsNamedFlagSections(t *testing.T) {
	cmd := NewCommand(context.Background())
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, section := range []string{"Proxy flags:", "Member health flags:", "Leader election flags:", "Etcd flags:", "--member-dial-timeout", "--cluster-probe-interval"} {
		if !strings.Contains(out.String(), section) {
			t.Errorf("--help does not show %q", section)
		}
	}
}
