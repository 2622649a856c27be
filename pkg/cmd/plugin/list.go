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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned/scheme"
	"github.com/switchboard-io/switchboard/pkg/kubeconfig"
)

// ListOptions are the options of kubectl switchboard list.
type ListOptions struct {
	// PrintFlags are -o and --template: cli-runtime's printers, besides
	// the table (no -o) and -o wide.
	PrintFlags *genericclioptions.PrintFlags
	// ProbeTimeout bounds each live check of the table.
	ProbeTimeout time.Duration

	// table is whether list prints the table with live checks, and wide
	// whether it is -o wide's; set by Complete.
	table, wide bool
	// hub makes the hub's clients, in Run.
	hub hubFlags

	genericiooptions.IOStreams
}

// NewListOptions returns the options of list, with their defaults.
func NewListOptions(streams genericiooptions.IOStreams) *ListOptions {
	return &ListOptions{
		PrintFlags:   genericclioptions.NewPrintFlags("").WithTypeSetter(scheme.Scheme),
		ProbeTimeout: 10 * time.Second,
		IOStreams:    streams,
	}
}

// newListCommand is the list command, which fills o from its flags.
func newListCommand(hub hubFlags, o *ListOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list [-o wide|json|yaml|name|jsonpath=...|...]",
		Aliases: []string{"status"},
		Short:   "List the joined clusters with their readiness, version and whether their credential works",
		Long: `list shows every Cluster on the hub, with the columns of kubectl get clusters
and CREDENTIAL, checked live: a request to the member's /version through the
hub, as you, which fails when the member credential does not work, the
member is down, or you may not use clusters/proxy. list then exits non-zero
and names the clusters that failed.

-o json, yaml, name, jsonpath, go-template, ... print the Clusters as the hub
stores them (a ClusterList), with no live check.`,
		Example: `  kubectl switchboard list
  kubectl switchboard list -o wide --context hub
  kubectl switchboard list -o jsonpath='{.items[*].metadata.name}'`,
		Args: cobra.NoArgs,
		RunE: runE(hub, o),
	}
	o.PrintFlags.AddFlags(cmd)
	cmd.Flags().Lookup("output").Usage = fmt.Sprintf("Output format. One of: (%s).", strings.Join(listFormats(o.PrintFlags), ", "))
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(listFormats(o.PrintFlags), cobra.ShellCompDirectiveNoFileComp))
	cmd.Flags().DurationVar(&o.ProbeTimeout, "probe-timeout", o.ProbeTimeout, "how long each live check may take")
	return cmd
}

// Complete decides between the table, as kubectl get does (no -o and no
// --template, or -o wide), and a printer.
func (o *ListOptions) Complete(hub hubFlags, _ *cobra.Command, _ []string) error {
	o.hub = hub
	output := *o.PrintFlags.OutputFormat
	template := ""
	if o.PrintFlags.TemplatePrinterFlags.TemplateArgument != nil {
		template = *o.PrintFlags.TemplatePrinterFlags.TemplateArgument
	}
	o.wide = output == "wide"
	o.table = o.wide || (output == "" && template == "")
	return nil
}

// Validate checks -o and --template, unless list prints the table.
func (o *ListOptions) Validate() error {
	if o.table {
		return nil
	}
	_, err := o.printer()
	return err
}

// printer is the printer -o names.
func (o *ListOptions) printer() (printers.ResourcePrinter, error) {
	printer, err := o.PrintFlags.ToPrinter()
	if genericclioptions.IsNoCompatiblePrinterError(err) {
		return nil, fmt.Errorf("--output must be one of %s, not %q", strings.Join(listFormats(o.PrintFlags), ", "), *o.PrintFlags.OutputFormat)
	}
	return printer, err
}

// Run prints the table, with a live check of each cluster, or the
// ClusterList with the printer -o names.
func (o *ListOptions) Run(ctx context.Context) error {
	if o.table {
		_, kube, sb, err := o.hub.clients()
		if err != nil {
			return err
		}
		return listTable(ctx, kube, sb.ClusterV1alpha1().RESTClient(), o.IOStreams, o.wide, o.ProbeTimeout)
	}
	printer, err := o.printer()
	if err != nil {
		return err
	}
	_, _, sb, err := o.hub.clients()
	if err != nil {
		return err
	}
	list, err := sb.ClusterV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing Clusters on the hub: %w", err)
	}
	list.SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind("ClusterList"))
	for i := range list.Items {
		list.Items[i].SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind("Cluster"))
	}
	if *o.PrintFlags.OutputFormat != "name" {
		return printer.PrintObj(list, o.Out)
	}
	// The name printer takes one object at a time.
	for i := range list.Items {
		if err := printer.PrintObj(&list.Items[i], o.Out); err != nil {
			return err
		}
	}
	return nil
}

// listFormats are list's -o values: the table's and cli-runtime's printers.
func listFormats(printFlags *genericclioptions.PrintFlags) []string {
	return append([]string{"wide"}, printFlags.AllowedFormats()...)
}

// probeParallelism is how many live checks run at once.
const probeParallelism = 8

// listTable prints the hub's table of Clusters (what kubectl get clusters
// prints) with a CREDENTIAL column, and fails naming every cluster whose
// live check failed.
func listTable(ctx context.Context, kube kubernetes.Interface, clusters rest.Interface, streams genericiooptions.IOStreams, wide bool, probeTimeout time.Duration) error {
	result := clusters.Get().Resource("clusters").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json").
		Do(ctx)
	if err := result.Error(); err != nil {
		return fmt.Errorf("listing Clusters on the hub: %w", err)
	}
	data, _ := result.Raw()
	table := &metav1.Table{}
	if err := json.Unmarshal(data, table); err != nil {
		return fmt.Errorf("the hub answered the list of Clusters with no table: %w", err)
	}
	if table.Kind != "Table" {
		return fmt.Errorf("the hub answered the list of Clusters with no table (kind %q)", table.Kind)
	}
	if len(table.Rows) == 0 {
		fmt.Fprintln(streams.ErrOut, "No clusters are joined.")
		return nil
	}
	nameColumn := -1
	for i, c := range table.ColumnDefinitions {
		if c.Format == "name" {
			nameColumn = i
			break
		}
	}
	if nameColumn < 0 {
		return errors.New("the hub's table of Clusters has no name column")
	}
	names := make([]string, len(table.Rows))
	for i, row := range table.Rows {
		if nameColumn < len(row.Cells) {
			names[i], _ = row.Cells[nameColumn].(string)
		}
	}
	results := probeAll(ctx, kube, names, probeTimeout)
	// CREDENTIAL goes after the columns every table shows, before -o wide's.
	at := len(table.ColumnDefinitions)
	for i, c := range table.ColumnDefinitions {
		if c.Priority != 0 {
			at = i
			break
		}
	}
	table.ColumnDefinitions = insert(table.ColumnDefinitions, at, metav1.TableColumnDefinition{
		Name: "Credential", Type: "string",
		Description: "Whether a request through the hub to the member's /version, as you, works.",
	})
	var failed []string
	for i := range table.Rows {
		cell := "works"
		if results[i] != nil {
			failed = append(failed, names[i])
			cell = "fails: " + shorten(results[i].Error(), 120)
		}
		cells := table.Rows[i].Cells
		if at > len(cells) {
			return fmt.Errorf("the hub's table of Clusters has a row of %d cells for %d columns", len(cells), len(table.ColumnDefinitions)-1)
		}
		table.Rows[i].Cells = insert(cells, at, any(cell))
	}
	if err := printers.NewTablePrinter(printers.PrintOptions{Wide: wide}).PrintObj(table, streams.Out); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("the credential check fails for %d of %d clusters: %s (see CREDENTIAL)", len(failed), len(names), strings.Join(failed, ", "))
	}
	return nil
}

func insert[T any](s []T, at int, v T) []T {
	out := make([]T, 0, len(s)+1)
	out = append(out, s[:at]...)
	out = append(out, v)
	return append(out, s[at:]...)
}

func shorten(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// probeAll checks every cluster's credential, a few at a time; the result
// for names[i] is at [i], nil when the check passed.
func probeAll(ctx context.Context, hub kubernetes.Interface, names []string, timeout time.Duration) []error {
	results := make([]error, len(names))
	sem := make(chan struct{}, probeParallelism)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = probeCredential(ctx, hub, name, timeout)
		}()
	}
	wg.Wait()
	return results
}

// probeCredential makes one request through the hub to the member's
// /version. It does not retry: a member that is down answers 503 at once,
// and one answer is what the check reports.
func probeCredential(ctx context.Context, hub kubernetes.Interface, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return hub.Discovery().RESTClient().Get().AbsPath(kubeconfig.ProxyPath(name) + "/version").MaxRetries(0).Do(ctx).Error()
}
