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

package join

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DryRun says whether join and unjoin change anything, as kubectl's
// --dry-run does.
type DryRun int

const (
	// DryRunNone changes what needs changing.
	DryRunNone DryRun = iota
	// DryRunClient reads the clusters and changes nothing.
	DryRunClient
	// DryRunServer sends every write with dryRun=All: the API servers
	// validate and admit it, and store nothing.
	DryRunServer
)

// rollbackTimeout bounds putting things back after a failed join, which
// runs even when the caller's context is already done.
const rollbackTimeout = 30 * time.Second

// writes carries the write options of one join or unjoin, and what it takes
// to undo the writes a join made, newest last.
type writer struct {
	dryRun DryRun
	undo   []undoStep
	// repairs are changes that put a drifted or broken object right; a
	// rollback leaves them.
	repairs []Change
}

// repaired records a repair, which a rollback leaves in place.
func (w *writer) repaired(c Change) {
	if w.dryRun == DryRunNone {
		w.repairs = append(w.repairs, c)
	}
}

// undoStep puts one object back as it was before join wrote it.
type undoStep struct {
	change Change
	run    func(ctx context.Context) error
}

func (w *writer) dryRunAll() []string {
	if w.dryRun == DryRunServer {
		return []string{metav1.DryRunAll}
	}
	return nil
}

func (w *writer) create() metav1.CreateOptions { return metav1.CreateOptions{DryRun: w.dryRunAll()} }
func (w *writer) update() metav1.UpdateOptions { return metav1.UpdateOptions{DryRun: w.dryRunAll()} }
func (w *writer) delete() metav1.DeleteOptions { return metav1.DeleteOptions{DryRun: w.dryRunAll()} }

// change is how a change is reported: "created Secret x", or "created
// Secret x (server dry run)"; note qualifies it further.
func (w *writer) change(object, action, note string) Change {
	switch w.dryRun {
	case DryRunClient:
		note = " (dry run)" + note
	case DryRunServer:
		note = " (server dry run)" + note
	}
	return Change{Object: object, Action: action, Note: note}
}

// onUndo records how to put an object back: undone says what that does
// ("deleted Secret ..."), run does it. Dry runs store nothing to undo.
func (w *writer) onUndo(undone Change, run func(ctx context.Context) error) {
	if w.dryRun != DryRunNone {
		return
	}
	w.undo = append(w.undo, undoStep{change: undone, run: run})
}

// created records how to undo a create that err says did not clearly
// fail: it succeeded, or its outcome is unknown (the connection broke, the
// context ended) and the object may exist. A create the server refused
// (an API Status) made nothing, and needs no undo.
func (w *writer) created(err error, undone Change, run func(ctx context.Context) error) {
	if err != nil && refused(err) {
		return
	}
	w.onUndo(undone, run)
}

// mark is a point in the undo list, for keep.
func (w *writer) mark() int { return len(w.undo) }

// keep drops the undo steps recorded since mark: what they would undo is a
// repair that stays.
func (w *writer) keep(mark int) { w.undo = w.undo[:mark] }

// rollback undoes the recorded writes, newest first, and says what it put
// back. It goes on past a failed step, so that as much as possible is put
// back, and returns every failure.
func (w *writer) rollback(ctx context.Context) ([]Change, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	var done []Change
	var errs []error
	for i := len(w.undo) - 1; i >= 0; i-- {
		step := w.undo[i]
		if err := step.run(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", step.change.Object, err))
			continue
		}
		done = append(done, step.change)
	}
	w.undo = nil
	return done, errors.Join(errs...)
}
