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

package version

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/pflag"
)

// Flag is the value of --version: unset, "true" (a one-line version) or
// "raw" (the whole build information as JSON).
type Flag string

const (
	flagUnset Flag = "false"
	flagTrue  Flag = "true"
	flagRaw   Flag = "raw"
)

// AddFlag registers --version in fs.
func AddFlag(fs *pflag.FlagSet, f *Flag) {
	*f = flagUnset
	fs.Var(f, "version", "Print version information and quit; --version=raw prints the whole build information as JSON.")
	fs.Lookup("version").NoOptDefVal = string(flagTrue)
}

// Requested says whether --version was given.
func (f *Flag) Requested() bool { return *f != flagUnset }

// Print writes the version in the form --version asked for.
func (f *Flag) Print(w io.Writer, program string) error {
	info := Get()
	if *f == flagRaw {
		out, err := json.MarshalIndent(info, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", out)
		return err
	}
	_, err := fmt.Fprintf(w, "%s %s (commit %s, built %s, %s %s)\n",
		program, info.GitVersion, info.GitCommit, info.BuildDate, info.GoVersion, info.Platform)
	return err
}

// String implements pflag.Value.
func (f *Flag) String() string { return string(*f) }

// Type implements pflag.Value.
func (f *Flag) Type() string { return "version" }

// IsBoolFlag lets --version stand alone.
func (f *Flag) IsBoolFlag() bool { return true }

// Set implements pflag.Value.
func (f *Flag) Set(s string) error {
	if s == string(flagRaw) {
		*f = flagRaw
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("must be true, false or raw, not %q", s)
	}
	if b {
		*f = flagTrue
	} else {
		*f = flagUnset
	}
	return nil
}
