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
)

// tokenChecker says whether a token authenticates as switchboard's service
// account in the member. The default asks the member with a
// SelfSubjectReview, which every authenticated identity may make.
type tokenChecker func(ctx context.Context, token []byte) error

func selfSubjectReviewChecker(member *rest.Config) tokenChecker {
	return func(ctx context.Context, token []byte) error {
		config := rest.AnonymousClientConfig(member)
		config.BearerToken = string(token)
		client, err := kubernetes.NewForConfig(config)
		if err != nil {
			return err
		}
		review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if got := review.Status.UserInfo.Username; got != impersonatorUser {
			return &wrongIdentityError{got: got}
		}
		return nil
	}
}

// ensureToken returns a working token of switchboard's service account. It
// reuses the token Secret if its token still authenticates, and replaces it
// otherwise (deleted, emptied, or issued for a service account that was
// recreated). It waits up to timeout for the member's token controller.
//
// t declares the Secret to create. A server dry run validates it but gets
// no token: the credential it returns holds a placeholder.
func ensureToken(ctx context.Context, member kubernetes.Interface, check tokenChecker, timeout time.Duration, t *target, w *writer) (*Credential, Change, error) {
	secret, err := findTokenSecret(ctx, member)
	if err != nil {
		return nil, Change{}, err
	}
	action := Created
	if secret != nil {
		obj := "Secret " + Namespace + "/" + secret.Name
		token := secret.Data[corev1.ServiceAccountTokenKey]
		if len(token) > 0 && len(secret.Data[corev1.ServiceAccountRootCAKey]) > 0 {
			checkErr := check(ctx, token)
			if checkErr == nil {
				return &Credential{Token: token, CACert: secret.Data[corev1.ServiceAccountRootCAKey]}, Change{Object: obj, Action: Unchanged}, nil
			}
			if !apierrors.IsUnauthorized(checkErr) && !isWrongIdentity(checkErr) {
				return nil, Change{}, fmt.Errorf("checking the token in %s: %w", obj, checkErr)
			}
		}
		// Broken or not filled in time earlier: start over with a new one.
		if err := member.CoreV1().Secrets(Namespace).Delete(ctx, secret.Name, w.deleteOptions()); err != nil && !apierrors.IsNotFound(err) {
			return nil, Change{}, fmt.Errorf("replacing the broken %s: %w", obj, err)
		}
		w.repaired(Change{Object: obj, Action: Deleted, Note: ", whose token no longer worked"})
		action = Corrected
	}
	if w.namespacePretended {
		// Nothing can be tried in a namespace that does not exist yet.
		return pretendCredential(), w.change("Secret "+Namespace+"/"+TokenSecretPrefix+"*", action, notSentInNewNamespace), nil
	}
	var want corev1.Secret
	if err := convert(t.config, &want); err != nil {
		return nil, Change{}, err
	}
	created, err := member.CoreV1().Secrets(Namespace).Create(ctx, &want, w.createOptions())
	if err != nil {
		return nil, Change{}, fmt.Errorf("creating the token Secret: %w", err)
	}
	obj := "Secret " + Namespace + "/" + created.Name
	if w.dryRun == DryRunServer {
		return pretendCredential(), w.change("Secret "+Namespace+"/"+TokenSecretPrefix+"*", action, ""), nil
	}
	// A token nobody received yet: until it is filled, a failure removes
	// it. One that replaces a broken token is a repair, and stays.
	name := created.Name
	mark := len(w.undo)
	w.onUndo(Change{Object: obj, Action: Deleted}, func(ctx context.Context) error {
		return ignoreNotFound(member.CoreV1().Secrets(Namespace).Delete(ctx, name, metav1.DeleteOptions{}))
	})
	var cred *Credential
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		s, err := member.CoreV1().Secrets(Namespace).Get(ctx, created.Name, metav1.GetOptions{})
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
			// join's own wait ran out; the member answered every request.
			return nil, Change{}, fmt.Errorf("%s was not filled with a token within %s; the member's token controller (kube-controller-manager) fills it. Join again once it runs",
				obj, timeout)
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

// impersonatorUser is the user name of switchboard's service account.
const impersonatorUser = "system:serviceaccount:" + Namespace + ":" + ServiceAccountName

// wrongIdentityError means a token authenticates, as someone else.
type wrongIdentityError struct{ got string }

func (e *wrongIdentityError) Error() string {
	return fmt.Sprintf("the token authenticates as %q, not %q", e.got, impersonatorUser)
}

func isWrongIdentity(err error) bool {
	var wrong *wrongIdentityError
	return errors.As(err, &wrong)
}

// findTokenSecret returns switchboard's token Secret in the member, if any.
func findTokenSecret(ctx context.Context, member kubernetes.Interface) (*corev1.Secret, error) {
	secrets, err := tokenSecrets(ctx, member)
	if err != nil || len(secrets) == 0 {
		return nil, err
	}
	return &secrets[0], nil
}

// tokenSecrets returns every token Secret of switchboard's service account
// in the member.
func tokenSecrets(ctx context.Context, member kubernetes.Interface) ([]corev1.Secret, error) {
	list, err := member.CoreV1().Secrets(Namespace).List(ctx, metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedByValue})
	if err != nil {
		return nil, fmt.Errorf("listing Secrets in %s: %w", Namespace, err)
	}
	var out []corev1.Secret
	for _, s := range list.Items {
		if s.Type == corev1.SecretTypeServiceAccountToken && s.Annotations[corev1.ServiceAccountNameKey] == ServiceAccountName {
			out = append(out, s)
		}
	}
	return out, nil
}
