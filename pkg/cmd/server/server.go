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

// Package server is the switchboard-apiserver command: its flags, their
// validation and the run loop.
package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/cli/globalflag"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/component-base/term"
	"k8s.io/klog/v2"

	// JSON logging for --logging-format=json.
	_ "k8s.io/component-base/logs/json/register"

	"github.com/switchboard-io/switchboard/pkg/embeddedetcd"
	"github.com/switchboard-io/switchboard/pkg/names"
)

// NewCommand returns the switchboard-apiserver command. It runs until ctx is
// cancelled, then shuts down gracefully.
func NewCommand(ctx context.Context) *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   names.Server,
		Short: "Switchboard: one endpoint on a hub cluster into many member clusters",
		Long: names.Server + ` is an aggregated API server. The hub's kube-apiserver
fronts it through the APIService v1alpha1.cluster.switchboard.io. It stores
Cluster objects (cluster.switchboard.io/v1alpha1) in etcd, embedded by default
or external with --etcd-servers, and authenticates and authorizes every request
through the hub.`,
		SilenceUsage: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ComponentGlobalsRegistry.Set()
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Version.Requested() {
				return o.Version.Print(cmd.OutOrStdout(), names.Server)
			}
			// Apply logging first, so that everything after it logs as asked.
			if err := logsapi.ValidateAndApply(o.Logs, utilfeature.DefaultFeatureGate); err != nil {
				return err
			}
			cliflag.PrintFlags(cmd.Flags())

			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return Run(cmd.Context(), o)
		},
		Args: func(cmd *cobra.Command, args []string) error {
			for _, arg := range args {
				if len(arg) > 0 {
					return fmt.Errorf("%q does not take any arguments, got %q", cmd.CommandPath(), args)
				}
			}
			return nil
		},
	}
	cmd.SetContext(ctx)

	fss := o.Flags()
	globalflag.AddGlobalFlags(fss.FlagSet("global"), cmd.Name(), logs.SkipLoggingConfigurationFlags())
	for _, fs := range fss.FlagSets {
		cmd.Flags().AddFlagSet(fs)
	}
	cols, _, _ := term.TerminalSize(cmd.OutOrStdout())
	cliflag.SetUsageAndHelpFunc(cmd, fss, cols)
	return cmd
}

// Run starts the embedded etcd when no external one is configured, then
// serves until ctx is cancelled. It returns an error when the server could
// not start or stopped for a reason other than ctx.
func Run(ctx context.Context, o *Options) error {
	logger := klog.FromContext(ctx)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	if o.usesEmbeddedEtcd() {
		etcd, err := embeddedetcd.Start(ctx, embeddedetcd.Config{
			DataDir:           o.EmbeddedEtcd.DataDir,
			QuotaBackendBytes: o.EmbeddedEtcd.QuotaBackendBytes,
			MinFreeDiskBytes:  o.EmbeddedEtcd.MinFreeDiskBytes,
		})
		if err != nil {
			return err
		}
		// Stopped after the API server has drained, so in-flight writes land.
		defer etcd.Close()
		o.Etcd.StorageConfig.Transport.ServerList = []string{etcd.Endpoint()}
		o.diskSpace = etcd.DiskSpace
		go func() {
			select {
			case err, ok := <-etcd.Err():
				if ok && err != nil {
					logger.Error(err, "Embedded etcd failed; shutting down")
					cancel(fmt.Errorf("embedded etcd failed: %w", err))
				}
			case <-ctx.Done():
			}
		}()
	}

	config, err := o.Config(ctx)
	if err != nil {
		return err
	}
	completed, err := config.Complete()
	if err != nil {
		return err
	}
	server, err := completed.New()
	if err != nil {
		return err
	}
	if err := server.GenericAPIServer.PrepareRun().RunWithContext(ctx); err != nil {
		return err
	}
	// Stopped by a failure rather than by the caller: exit non-zero.
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}
