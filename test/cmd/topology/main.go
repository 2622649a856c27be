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

// Command topology starts and stops the local hub, member clusters and
// switchboard: hack/local-up.sh and hack/local-down.sh run it.
//
//	topology up [--run-dir DIR] [--members N]
//	topology down [--run-dir DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchboard-io/switchboard/test/topology"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: topology up|down [--run-dir DIR] [--members N]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	runDir := fs.String("run-dir", envOr("SWITCHBOARD_RUN_DIR", "_output/local-up"), "directory of the topology's certificates, kubeconfigs, data and logs")
	members := fs.Int("members", 2, "number of member clusters")
	_ = fs.Parse(os.Args[2:])

	if err := run(os.Args[1], *runDir, *members); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

// run brings the topology up or down, under a context that SIGINT and
// SIGTERM cancel.
func run(command, runDir string, members int) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if command == "up" {
		return up(ctx, runDir, members)
	}
	return topology.Down(runDir, os.Stdout)
}

func up(ctx context.Context, runDir string, members int) error {
	binaries, err := topology.BinariesFromEnv()
	if err != nil {
		return err
	}
	state, already, err := topology.Up(ctx, topology.Config{RunDir: runDir, Members: members, Binaries: binaries, Progress: os.Stdout})
	if err != nil {
		return err
	}
	if already {
		fmt.Printf("The topology in %s is already up; nothing was started.\n", state.RunDir)
	}
	fmt.Print(state.Summary())
	return nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
