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
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
)

// Change is one thing join or unjoin did, or found already right.
type Change struct {
	// Object is "Kind namespace/name" or "Kind name".
	Object string
	// Action is created, corrected, deleted or unchanged.
	Action string
	// Note, when set, follows the object: " (server dry run)".
	Note string
}

func (c Change) String() string { return c.Action + " " + c.Object + c.Note }

// Actions join and unjoin report.
const (
	Created   = "created"
	Corrected = "corrected"
	Deleted   = "deleted"
	Unchanged = "unchanged"
	// Kept is for objects switchboard found but does not own, which it
	// neither changes nor deletes.
	Kept = "kept (not managed by switchboard)"
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

// notSentInNewNamespace qualifies a server dry run's change that was not
// sent, because its namespace does not exist yet.
const notSentInNewNamespace = ": not sent, as its namespace does not exist yet"

// rollbackTimeout bounds putting things back after a failed join, which
// runs even when the caller's context is already done.
const rollbackTimeout = 30 * time.Second

// isManaged says whether switchboard owns an object.
func isManaged(meta metav1.Object) bool {
	return meta.GetLabels()[ManagedByLabel] == ManagedByValue
}

// notOwnedError refuses to touch an object with a reserved name that
// switchboard did not make.
func notOwnedError(object string) error {
	return fmt.Errorf("%s exists but is not managed by switchboard (no label %s=%s): delete it, or add the label to let switchboard manage it",
		object, ManagedByLabel, ManagedByValue)
}

// target is a declared object in its cluster, with what join found there:
// nil when there is none.
type target struct {
	object
	resource
	current metav1.Object
}

// writer makes the writes of one join or unjoin, and keeps what it takes
// to undo a join's, newest last.
type writer struct {
	dryRun DryRun
	undo   []undoStep
	// repairs put a drifted or broken object right; a rollback leaves them.
	repairs []Change
	// namespacePretended: a server dry run only pretended to create the
	// member's namespace, so nothing in it can be tried.
	namespacePretended bool
	// refusingGuard is the member's guard as found, when a server dry run
	// only pretended to take it over (or delete it) and it refuses this
	// user's writes to the objects it covers, which are therefore not sent.
	refusingGuard metav1.Object
}

// guardNote is the note of a server dry run's write to t that is not sent
// because the guard as it is would refuse it, or "".
func (w *writer) guardNote(t *target) string {
	if w.refusingGuard != nil && t.where == inMember && !t.guard && guardCovers(w.refusingGuard, t.object) {
		return notSentGuarded
	}
	return ""
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

// applyOptions force: join checked that switchboard owns the object, so
// fields that another manager took over (an edit) are switchboard's to
// put right.
func (w *writer) applyOptions() metav1.ApplyOptions {
	return metav1.ApplyOptions{FieldManager: fieldManager, Force: true, DryRun: w.dryRunAll()}
}

func (w *writer) createOptions() metav1.CreateOptions {
	return metav1.CreateOptions{FieldManager: fieldManager, DryRun: w.dryRunAll()}
}

func (w *writer) deleteOptions() metav1.DeleteOptions {
	return metav1.DeleteOptions{DryRun: w.dryRunAll()}
}

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

// ensure applies t when it is missing or differs from its declaration,
// and says what it did. What it creates, a rollback deletes. A hub object
// it corrects is this Cluster's, and a rollback puts it back; a member
// object it corrects serves every Cluster on the member: that repair stays.
// A write whose outcome is unknown (not refused) may have happened, and is
// undone too.
func (w *writer) ensure(ctx context.Context, t *target) (Change, error) {
	var declared, have map[string]any
	if err := convert(t.config, &declared); err != nil {
		return Change{}, err
	}
	switch {
	case t.current == nil && w.namespacePretended && t.where == inMember && t.config.GetNamespace() != nil:
		return w.change(t.String(), Created, notSentInNewNamespace), nil
	case t.current == nil && w.guardNote(t) != "":
		return w.change(t.String(), Created, w.guardNote(t)), nil
	case t.current == nil:
		// Create, not apply: an object someone made since inspect read
		// it as absent is not join's, and must neither be taken over nor
		// deleted by a rollback.
		err := t.create(ctx, declared, w.createOptions())
		if !refused(err) {
			w.onUndo(Change{Object: t.inReports(), Action: Deleted}, func(ctx context.Context) error {
				return ignoreNotFound(t.delete(ctx, metav1.DeleteOptions{}))
			})
		}
		if err != nil {
			return Change{}, fmt.Errorf("creating %s: %w", t.inErrors(), err)
		}
		if _, ok := t.config.(*corev1ac.NamespaceApplyConfiguration); ok && w.dryRun == DryRunServer {
			w.namespacePretended = true
		}
		return w.change(t.String(), Created, ""), nil
	case !isManaged(t.current):
		// Found without the label, and used as it is (usedAsFound).
		return Change{Object: t.String(), Action: Kept}, nil
	}
	if err := convert(t.current, &have); err != nil {
		return Change{}, err
	}
	// What was read has no type meta; it is of the declared type.
	have["apiVersion"], have["kind"] = declared["apiVersion"], declared["kind"]
	patch := extras(declared, have, t.exact)
	if covers(have, declared, t.defaulted) && len(patch) == 0 {
		return Change{Object: t.String(), Action: Unchanged}, nil
	}
	if note := w.guardNote(t); note != "" {
		return w.change(t.String(), Corrected, note), nil
	}
	for _, f := range t.immutable {
		if !covers(have, map[string]any{f: declared[f]}, t.defaulted) {
			return w.replace(ctx, t, declared, have)
		}
	}
	// What must go goes first: an aggregation rule would rewrite the rules
	// join applies, a client certificate beside the token would spoil it.
	var err error
	sent := false
	if len(patch) > 0 {
		err = t.mergePatch(ctx, patch, metav1.PatchOptions{FieldManager: fieldManager, DryRun: w.dryRunAll()})
		sent = !refused(err)
	}
	if err == nil && !covers(have, declared, t.defaulted) {
		err = t.apply(ctx, declared, w.applyOptions())
		sent = sent || !refused(err)
	}
	// The agent's hub identity is corrected for good: a rollback must not
	// give it back rights someone added.
	if sent && t.where == onHub && !t.agent {
		restore := previous(declared, have, t.exact)
		w.onUndo(Change{Object: t.inReports(), Action: "restored"}, func(ctx context.Context) error {
			return t.apply(ctx, restore, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
		})
	}
	if err != nil {
		return Change{}, fmt.Errorf("correcting %s: %w", t.inErrors(), err)
	}
	change := w.change(t.String(), Corrected, "")
	if t.where == inMember || t.agent {
		w.repaired(change)
	}
	return change, nil
}

// replace deletes t and applies it anew: a binding's role reference cannot
// change in place. When the new one cannot be made, it puts the old one
// back, so that the member is not left without the binding every Cluster
// on it needs.
func (w *writer) replace(ctx context.Context, t *target, declared, have map[string]any) (Change, error) {
	if w.dryRun == DryRunServer {
		return w.change(t.String(), Corrected, ": not sent, as a dry run cannot delete and create it again"), nil
	}
	if err := t.delete(ctx, metav1.DeleteOptions{}); ignoreNotFound(err) != nil {
		return Change{}, fmt.Errorf("replacing %s: %w", t.inErrors(), err)
	}
	// Create, not apply: a binding someone made since the delete is not
	// join's to take over.
	if err := t.create(ctx, declared, w.createOptions()); err != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		if rerr := t.create(ctx, previous(declared, have, t.exact), w.createOptions()); rerr != nil {
			return Change{}, fmt.Errorf("replacing %s: %w; putting the old binding back failed too, so the member has none: %w", t.inErrors(), err, rerr)
		}
		return Change{}, fmt.Errorf("replacing %s: %w; the old binding is back", t.inErrors(), err)
	}
	change := Change{Object: t.String(), Action: Corrected}
	w.repaired(change)
	return change, nil
}

// repaired records a repair, which a rollback leaves in place.
func (w *writer) repaired(c Change) {
	if w.dryRun == DryRunNone {
		w.repairs = append(w.repairs, c)
	}
}

// onUndo records how to put an object back: undone says what that does
// ("deleted Secret ..."), run does it. Dry runs store nothing to undo.
func (w *writer) onUndo(undone Change, run func(ctx context.Context) error) {
	if w.dryRun == DryRunNone {
		w.undo = append(w.undo, undoStep{change: undone, run: run})
	}
}

// rollback undoes the recorded writes, newest first, and says what it put
// back. It goes on past a failed step, so that as much as possible is put
// back, and returns every failure.
func (w *writer) rollback(ctx context.Context) ([]Change, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	var done []Change
	var errs []error
	for _, step := range slices.Backward(w.undo) {
		if err := step.run(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", step.change.Object, err))
			continue
		}
		done = append(done, step.change)
	}
	w.undo = nil
	return done, errors.Join(errs...)
}

// refused says whether err is the server's answer: the write did not
// happen. Other errors (a broken connection, an ended context) leave it
// unknown.
func refused(err error) bool {
	_, ok := err.(apierrors.APIStatus)
	return ok
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
