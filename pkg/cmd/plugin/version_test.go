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
	"cmp"
	"context"
	"encoding/json"
	"strings"
	"testing"

	apimachineryversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-io/switchboard/pkg/version"
)

func TestVersion(t *testing.T) {
	want := version.Get()
	for _, tc := range []struct {
		output    string
		unmarshal func([]byte, any) error
	}{
		{"json", json.Unmarshal},
		{"yaml", func(data []byte, v any) error { return yaml.UnmarshalStrict(data, v) }},
	} {
		t.Run(cmp.Or(tc.output, "one line"), func(t *testing.T) {
			stdout, _, err := runPlugin(t, "version", "-o", tc.output)
			if err != nil {
				t.Fatal(err)
			}
			var got apimachineryversion.Info
			if err := tc.unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("%v:\n%s", err, stdout)
			}
			if got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
	stdout, _, err := runPlugin(t, "version")
	if err != nil || !strings.HasPrefix(stdout, "kubectl-switchboard "+want.GitVersion+" (commit "+want.GitCommit) {
		t.Errorf("version: %v %q", err, stdout)
	}
	if _, _, err := runPlugin(t, "version", "-o", "wide"); err == nil || !strings.Contains(err.Error(), `--output must be 'yaml' or 'json', not "wide"`) {
		t.Errorf("-o wide: err = %v", err)
	}
}

func TestVersionOptions(t *testing.T) {
	info := apimachineryversion.Info{GitVersion: "v1.2.3", GitCommit: "0123abc", GoVersion: "go1.26.0", Platform: "linux/amd64"}
	for _, tc := range []struct {
		output string
		// want is the output, or wantErr Validate's error.
		want, wantErr string
	}{
		{output: "", want: "kubectl-switchboard v1.2.3 (commit 0123abc, go1.26.0)\n"},
		{output: "json", want: `{
  "major": "",
  "minor": "",
  "gitVersion": "v1.2.3",
  "gitCommit": "0123abc",
  "gitTreeState": "",
  "buildDate": "",
  "goVersion": "go1.26.0",
  "compiler": "",
  "platform": "linux/amd64"
}
`},
		{output: "yaml", want: "buildDate: \"\"\ncompiler: \"\"\ngitCommit: 0123abc\ngitTreeState: \"\"\ngitVersion: v1.2.3\ngoVersion: go1.26.0\nmajor: \"\"\nminor: \"\"\nplatform: linux/amd64\n"},
		{output: "wide", wantErr: `--output must be 'yaml' or 'json', not "wide"`},
		{output: "JSON", wantErr: `--output must be 'yaml' or 'json', not "JSON"`},
	} {
		t.Run(cmp.Or(tc.output, "one line"), func(t *testing.T) {
			var out bytes.Buffer
			o := NewVersionOptions(genericiooptions.IOStreams{Out: &out, ErrOut: &out})
			o.Output = tc.output
			if err := o.Complete(nil, nil); err != nil {
				t.Fatal(err)
			}
			if o.info != version.Get() {
				t.Errorf("Complete took %+v, want this build's %+v", o.info, version.Get())
			}
			err := o.Validate()
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Errorf("Validate() = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			o.info = info
			if err := o.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("output:\n%s\nwant:\n%s", out.String(), tc.want)
			}
		})
	}
}
