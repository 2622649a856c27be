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

// Command switchboard-apiserver is the switchboard aggregated API server.
package main

import (
	"os"
	"runtime/debug"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/switchboard-io/switchboard/pkg/cmd/server"
)

// gcPercent is the garbage collector's target when GOGC is not set: the
// heap may grow to three times what is live between two collections,
// rather than Go's default of two. A proxied request allocates a lot that
// lives briefly, over a small live heap, so collections are frequent: with
// 200, switchboard spends about a fifth less CPU per proxied GET, for about
// a sixth more memory (docs/performance.md).
const gcPercent = 200

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	ctx := genericapiserver.SetupSignalContext()
	os.Exit(cli.Run(server.NewCommand(ctx)))
}
