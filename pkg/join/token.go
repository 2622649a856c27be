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

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/pkg/names"
)

// tokenChecker says whether a token authenticates as the service account
// it was issued for. The default asks the API server with a
// SelfSubjectReview, which every authenticated identity may make.
type tokenChecker func(ctx context.Context, token []byte) error

func selfSubjectReviewChecker(server *rest.Config, user string) tokenChecker {
	return func(ctx context.Context, token []byte) error {
		config := rest.AnonymousClientConfig(server)
		config.BearerToken = string(token)
		client, err := kubernetes.NewForConfig(config)
		if err != nil {
			return err
		}
		review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if got := review.Status.UserInfo.Username; got != user {
			return &wrongIdentityError{got: got, want: user}
		}
		return nil
	}
}

// tokenAccount is a service account whose token join keeps in a token
// Secret of a generated name: switchboard's impersonator in the member, or
// a tunnelled member's agent on the hub.
type tokenAccount struct {
	client kubernetes.Interface
	// where is inMember or onHub.
	where                     string
	namespace, serviceAccount string
	check                     tokenChecker
	// replace, when set, says why a token Secret that works must be
	// replaced all the same.
	replace string
}

func (a tokenAccount) user() string {
	return "system:serviceaccount:" + a.namespace + ":" + a.serviceAccount
}

// impersonator is switchboard's service account in the member.
func impersonator(member kubernetes.Interface, check tokenChecker) tokenAccount {
	return tokenAccount{client: member, where: inMember, namespace: Namespace, serviceAccount: ServiceAccountName, check: check}
}

// agentAccount is the hub service account of Cluster name's agent.
func agentAccount(hub kubernetes.Interface, hubNamespace, name string, check tokenChecker) tokenAccount {
	return tokenAccount{client: hub, where: onHub, namespace: hubNamespace, serviceAccount: names.AgentHubIdentity(name), check: check}
}

// prefix begins the name of the account's token Secrets.
func (a tokenAccount) prefix() string { return a.serviceAccount + "-token-" }

// ensureToken returns a working token of account. It reuses the token
// Secret if its token still authenticates, and replaces it otherwise
// (deleted, emptied, or issued for a service account that was recreated).
// It waits up to timeout for the cluster's token controller.
//
// t declares the Secret to create. A server dry run validates it but gets
// no token: the credential it returns holds a placeholder.
func ensureToken(ctx context.Context, account tokenAccount, timeout time.Duration, t *target, w *writer) (*Credential, Change, error) {
	client, namespace := account.client, account.namespace
	secrets, err := tokenSecrets(ctx, account)
	if err != nil {
		return nil, Change{}, err
	}
	var secret *corev1.Secret
	if len(secrets) > 0 {
		secret = &secrets[0]
	}
	if account.replace != "" {
		// Every token of the account goes, not only the one join uses.
		for _, extra := range secrets[min(1, len(secrets)):] {
			obj := "Secret " + namespace + "/" + extra.Name
			if err := client.CoreV1().Secrets(namespace).Delete(ctx, extra.Name, w.deleteOptions()); ignoreNotFound(err) != nil {
				return nil, Change{}, fmt.Errorf("deleting %s: %w", obj, err)
			}
			w.repaired(Change{Object: obj, Action: Deleted, Note: ": " + account.replace})
		}
	}
	action := Created
	if secret != nil {
		obj := "Secret " + namespace + "/" + secret.Name
		token := secret.Data[corev1.ServiceAccountTokenKey]
		why := ", whose token no longer worked"
		if account.replace != "" {
			why = ": " + account.replace
		} else if len(token) > 0 && len(secret.Data[corev1.ServiceAccountRootCAKey]) > 0 {
			checkErr := account.check(ctx, token)
			if checkErr == nil {
				return &Credential{Token: token, CACert: secret.Data[corev1.ServiceAccountRootCAKey]}, Change{Object: obj, Action: Unchanged}, nil
			}
			if !apierrors.IsUnauthorized(checkErr) && !isWrongIdentity(checkErr) {
				return nil, Change{}, fmt.Errorf("checking the token in %s: %w", obj, checkErr)
			}
		}
		// Broken or not filled in time earlier: start over with a new one.
		if note := w.guardNote(t); note != "" {
			return pretendCredential(), w.change("Secret "+namespace+"/"+account.prefix()+"*", Corrected, note), nil
		}
		if err := client.CoreV1().Secrets(namespace).Delete(ctx, secret.Name, w.deleteOptions()); err != nil && !apierrors.IsNotFound(err) {
			return nil, Change{}, fmt.Errorf("replacing %s: %w", obj, err)
		}
		w.repaired(Change{Object: obj, Action: Deleted, Note: why})
		action = Corrected
	}
	pattern := "Secret " + namespace + "/" + account.prefix() + "*"
	if w.namespacePretended && account.where == inMember {
		// Nothing can be tried in a namespace that does not exist yet.
		return pretendCredential(), w.change(pattern, action, notSentInNewNamespace), nil
	}
	if note := w.guardNote(t); note != "" {
		return pretendCredential(), w.change(pattern, action, note), nil
	}
	var want corev1.Secret
	if err := convert(t.config, &want); err != nil {
		return nil, Change{}, err
	}
	created, err := client.CoreV1().Secrets(namespace).Create(ctx, &want, w.createOptions())
	if err != nil {
		return nil, Change{}, fmt.Errorf("creating the token Secret %s in the %s: %w", pattern, account.where, err)
	}
	obj := "Secret " + namespace + "/" + created.Name
	if w.dryRun == DryRunServer {
		return pretendCredential(), w.change(pattern, action, ""), nil
	}
	// A token nobody received yet: until it is filled, a failure removes
	// it. One that replaces a broken token is a repair, and stays.
	name := created.Name
	mark := len(w.undo)
	w.onUndo(Change{Object: obj, Action: Deleted}, func(ctx context.Context) error {
		return ignoreNotFound(client.CoreV1().Secrets(namespace).Delete(ctx, name, metav1.DeleteOptions{}))
	})
	var cred *Credential
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		s, err := client.CoreV1().Secrets(namespace).Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if len(s.Data[corev1.ServiceAccountTokenKey]) == 0 || len(s.Data[corev1.ServiceAccountRootCAKey]) == 0 {
			return false, nil
		}
		cred = &Credential{Token: s.Data[corev1.ServiceAccountTokenKey], CACert: s.Data[corev1.ServiceAccountRootCAKey]}
		return true, nil
	})
	if err != nil {
		if wait.Interrupted(err) && ctx.Err() == nil {
			// join's own wait ran out; the cluster answered every request.
			return nil, Change{}, fmt.Errorf("%s was not filled with a token within %s; the %s's token controller (kube-controller-manager) fills it. Join again once it runs",
				obj, timeout, account.where)
		}
		return nil, Change{}, fmt.Errorf("waiting for the token in %s: %w", obj, err)
	}
	if action == Corrected {
		w.undo = w.undo[:mark]
		w.repaired(Change{Object: obj, Action: Created, Note: " in its place"})
	}
	return cred, Change{Object: obj, Action: action}, nil
}

// pretendCredential stands for the token a server dry run does not get.
func pretendCredential() *Credential {
	return &Credential{Token: []byte(placeholder), CACert: []byte(placeholder)}
}

// wrongIdentityError means a token authenticates, as someone else.
type wrongIdentityError struct{ got, want string }

func (e *wrongIdentityError) Error() string {
	return fmt.Sprintf("the token authenticates as %q, not %q", e.got, e.want)
}

func isWrongIdentity(err error) bool {
	var wrong *wrongIdentityError
	return errors.As(err, &wrong)
}

// findTokenSecret returns the account's token Secret, if any.
func findTokenSecret(ctx context.Context, account tokenAccount) (*corev1.Secret, error) {
	secrets, err := tokenSecrets(ctx, account)
	if err != nil || len(secrets) == 0 {
		return nil, err
	}
	return &secrets[0], nil
}

// tokenSecrets returns every token Secret of the account that join made.
func tokenSecrets(ctx context.Context, account tokenAccount) ([]corev1.Secret, error) {
	list, err := account.client.CoreV1().Secrets(account.namespace).List(ctx, metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedByValue})
	if err != nil {
		return nil, fmt.Errorf("listing Secrets in %s in the %s: %w", account.namespace, account.where, err)
	}
	var out []corev1.Secret
	for _, s := range list.Items {
		if s.Type == corev1.SecretTypeServiceAccountToken && s.Annotations[corev1.ServiceAccountNameKey] == account.serviceAccount {
			out = append(out, s)
		}
	}
	return out, nil
}
