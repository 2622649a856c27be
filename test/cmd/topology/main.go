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
//	topology up [--run-dir DIR] [--members N] [--isolated-members N]
//	topology down [--run-dir DIR]
//	topology forward --listen HOST:PORT --to HOST:PORT
//
// forward passes TCP connections on until SIGTERM: up starts one for each
// isolated member, from its veth pair to the hub.
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

const usage = `usage: topology up [--run-dir DIR] [--members N] [--isolated-members N]
       topology down [--run-dir DIR]
       topology forward --listen HOST:PORT --to HOST:PORT`

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "up" && os.Args[1] != "down" && os.Args[1] != "forward") {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	var o options
	if os.Args[1] == "forward" {
		fs.StringVar(&o.listen, "listen", "", "address to listen on, host:port")
		fs.StringVar(&o.to, "to", "", "address to pass each connection on to, host:port")
	} else {
		fs.StringVar(&o.runDir, "run-dir", envOr("SWITCHBOARD_RUN_DIR", "_output/local-up"), "directory of the topology's certificates, kubeconfigs, data and logs")
	}
	if os.Args[1] == "up" {
		fs.IntVar(&o.members, "members", 2, "number of member clusters")
		fs.IntVar(&o.isolated, "isolated-members", 0, "number of member clusters, named edge1, edge2, ..., each in a network namespace that switchboard cannot reach, joined through a switchboard-agent tunnel")
	}
	_ = fs.Parse(os.Args[2:])
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "error: unexpected arguments %q\n%s\n", fs.Args(), usage)
		os.Exit(2)
	}

	if err := run(os.Args[1], o); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	runDir            string
	members, isolated int
	listen, to        string
}

// run brings the topology up or down, or forwards, under a context that
// SIGINT and SIGTERM cancel.
func run(command string, o options) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	switch command {
	case "up":
		return up(ctx, o)
	case "forward":
		return forward(ctx, o.listen, o.to)
	}
	return topology.Down(o.runDir, os.Stdout)
}

func up(ctx context.Context, o options) error {
	binaries, err := topology.BinariesFromEnv()
	if err != nil {
		return err
	}
	if binaries.Topology == "" {
		// This program is the hub forwarder of isolated members.
		if binaries.Topology, err = os.Executable(); err != nil {
			return err
		}
	}
	state, already, err := topology.Up(ctx, topology.Config{
		RunDir:          o.runDir,
		Members:         o.members,
		IsolatedMembers: o.isolated,
		Binaries:        binaries,
		Progress:        os.Stdout,
	})
	if err != nil {
		return err
	}
	if already {
		fmt.Printf("The topology in %s is already up; nothing was started.\n", state.RunDir)
	}
	fmt.Print(state.Summary())
	return nil
}

// forward passes every connection to listen on to to, until ctx ends.
func forward(ctx context.Context, listen, to string) error {
	if listen == "" || to == "" {
		return fmt.Errorf("forward needs --listen and --to\n%s", usage)
	}
	lb, err := topology.ListenLoadBalancer(listen, to)
	if err != nil {
		return err
	}
	fmt.Printf("Forwarding %s to %s\n", lb.Addr(), to)
	<-ctx.Done()
	fmt.Println("Stopping")
	return lb.Close()
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
