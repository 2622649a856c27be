#!/usr/bin/env bash
# Copyright The Switchboard Authors.
# SPDX-License-Identifier: Apache-2.0

# Starts a hub cluster, member clusters and switchboard on loopback, from
# binaries built from the Go module proxy (cached in .cache/), and registers
# switchboard with the hub. Running it again while the topology is up
# reports what runs and changes nothing.
#
#   hack/local-up.sh [--members N]     (make local-up)
#
# SWITCHBOARD_RUN_DIR moves the run directory (default _output/local-up).

set -o errexit
set -o nounset
set -o pipefail

# shellcheck source=hack/versions.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/versions.sh"
# shellcheck source=hack/lib/topology.sh
source "${SWITCHBOARD_ROOT}/hack/lib/topology.sh"

topology::prepare
"$(topology::tool)" up --run-dir "${SWITCHBOARD_RUN_DIR}" "$@"
