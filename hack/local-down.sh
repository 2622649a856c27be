#!/usr/bin/env bash
# Copyright The Switchboard Authors.
# SPDX-License-Identifier: Apache-2.0

# Stops exactly the processes hack/local-up.sh started, by the pids it
# recorded, and removes the run directory.

set -o errexit
set -o nounset
set -o pipefail

# shellcheck source=hack/versions.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/versions.sh"
# shellcheck source=hack/lib/topology.sh
source "${SWITCHBOARD_ROOT}/hack/lib/topology.sh"

SWITCHBOARD_RUN_DIR="${SWITCHBOARD_RUN_DIR:-${SWITCHBOARD_ROOT}/_output/local-up}"
"$(topology::tool)" down --run-dir "${SWITCHBOARD_RUN_DIR}"
