#!/usr/bin/env bash
# Copyright The Switchboard Authors.
# SPDX-License-Identifier: Apache-2.0

# Runs golangci-lint with .golangci.yaml over every package of the module.
# golangci-lint is pinned in hack/tools/go.mod, a module of its own (as in
# Kubernetes' hack/tools) so that its dependencies do not move the versions
# the server builds with; go tool builds it on first use and caches it.
#
#   hack/verify-golangci-lint.sh [golangci-lint run flags] [packages]    (make verify-lint)
#
# For example, to lint one package:  hack/verify-golangci-lint.sh ./pkg/registry/...

set -o errexit
set -o nounset
set -o pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${REPO_ROOT}"

# -modfile must be a flag, not GOFLAGS: golangci-lint runs go list for the
# packages it lints, which must see the main go.mod.
GOWORK=off "${GO:-go}" tool -modfile=hack/tools/go.mod golangci-lint run "$@"
