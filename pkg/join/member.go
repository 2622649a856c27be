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

// Package join sets up a member cluster for switchboard: an identity in the
// member that may do nothing but impersonate, and its token.
package join

import "github.com/switchboard-io/switchboard/pkg/names"

// Names of the objects switchboard owns in a member. Users must not edit them.
const (
	Namespace          = names.MemberNamespace
	ServiceAccountName = names.Impersonator
	ClusterRoleName    = names.ImpersonatorRole
	// TokenSecretPrefix begins the name of the token Secret.
	TokenSecretPrefix = names.ImpersonatorTokenPrefix

	// ManagedByLabel marks every object switchboard creates.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "switchboard"
)

// Credential is what switchboard presents to a member.
type Credential struct {
	Token  []byte
	CACert []byte
}
