#!/usr/bin/env bash
# Copyright The Switchboard Authors.
# SPDX-License-Identifier: Apache-2.0

# Runs the end-to-end suite against the local topology: it reuses one that
# make local-up started, or starts its own and stops it afterwards.
#
#   hack/test-e2e.sh [go test flags]    (make test-e2e)

set -o errexit
set -o nounset
set -o pipefail

# shellcheck source=hack/versions.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/versions.sh"
# shellcheck source=hack/lib/topology.sh
source "${SWITCHBOARD_ROOT}/hack/lib/topology.sh"

topology::prepare
# The real kubectl, pinned with the cluster version.
if [[ -n "${KUBECTL_BIN:-}" && -x "${KUBECTL_BIN}" ]]; then
  export KUBECTL_BIN
fi
# kubectl finds the kubectl-switchboard plugin on the PATH.
export PATH="${SWITCHBOARD_ROOT}/_output/bin:${PATH}"
cd "${SWITCHBOARD_ROOT}"
go test -count=1 -timeout 45m "$@" ./test/e2e/...
