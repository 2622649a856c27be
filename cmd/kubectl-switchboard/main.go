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

// Command kubectl-switchboard is the switchboard kubectl plugin: put it on
// the PATH and run kubectl switchboard. Started as kubectl_complete-switchboard
// (a link to it, on the PATH too), it completes kubectl switchboard's
// arguments for kubectl's shell completion.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/pkg/cmd/plugin"
)

func main() {
	os.Exit(run())
}

// run runs the command and returns the exit code, once its deferred calls
// have run.
func run() int {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	// The first signal cancels the command, which then puts back what it
	// changed (join does); a second one ends the program at once.
	go func() {
		<-ctx.Done()
		cancel()
	}()
	// Warnings from the hub print as kubectl prints them, once each.
	rest.SetDefaultWarningHandler(rest.NewWarningWriter(os.Stderr, rest.WarningWriterOptions{Deduplicate: true}))
	cmd := plugin.NewCommand(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	cmd.SetArgs(plugin.Args(os.Args))
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	return 0
}
