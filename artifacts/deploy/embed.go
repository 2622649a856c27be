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

// Package deploy holds the install manifests (a kustomize base and its
// variants), so that kubectl switchboard install renders exactly the files
// an administrator would apply with kubectl apply -k.
package deploy

import "embed"

// Files are the kustomizations: base/, single/, ha/ and cert-manager/.
//
//go:embed base/*.yaml single/*.yaml ha/*.yaml cert-manager/*.yaml
var Files embed.FS

// Variants are the directories an administrator installs from.
var Variants = []string{"single", "ha"}
