#!/usr/bin/env bash
# Copyright The Switchboard Authors.
# SPDX-License-Identifier: Apache-2.0

# Measures switchboard's proxy against talking to a member directly, on the
# local topology, and prints markdown tables (test/bench/cmd/proxybench):
# one for member1, and one for edge1, an isolated member that switchboard
# reaches only through its agent's tunnel. It brings up its own topology in
# BENCH_RUN_DIR (default _output/bench), with that isolated member (which,
# as any network namespace, needs root), or reuses one running there, and
# stops it at the end only if it started it. The tables are also written to
# BENCH_OUT (default _output/bench.md).
#
#   hack/bench.sh [proxybench flags]    (make bench)
#
# For example, to keep the topology (and the LIST's 55 MB of ConfigMaps)
# between runs:  hack/bench.sh --keep
# or to measure a running hack/local-up.sh --isolated-members 1:
#   BENCH_RUN_DIR=_output/local-up hack/bench.sh
# (without an isolated member there, add --tunnel-member= to measure no tunnel).

set -o errexit
set -o nounset
set -o pipefail

# shellcheck source=hack/versions.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/versions.sh"
# shellcheck source=hack/lib/topology.sh
source "${SWITCHBOARD_ROOT}/hack/lib/topology.sh"

# The bench's own run directory, not make local-up's: it fills member1 with
# tens of megabytes of objects and measures best on a quiet topology.
BENCH_RUN_DIR="${BENCH_RUN_DIR:-${SWITCHBOARD_ROOT}/_output/bench}"
BENCH_OUT="${BENCH_OUT:-${SWITCHBOARD_ROOT}/_output/bench.md}"
export SWITCHBOARD_RUN_DIR="${BENCH_RUN_DIR}"

# The build's output goes to stderr, so that stdout is the tables alone.
topology::prepare >&2
cd "${SWITCHBOARD_ROOT}"
bin="${SWITCHBOARD_ROOT}/_output/bin/proxybench"
go build -o "${bin}" ./test/bench/cmd/proxybench
rm -f "${BENCH_OUT}"
start=${SECONDS}
status=0
"${bin}" --run-dir "${BENCH_RUN_DIR}" --out "${BENCH_OUT}" "$@" || status=$?
echo "proxybench took $((SECONDS - start))s and exited ${status}; the tables are in ${BENCH_OUT}." >&2
exit "${status}"
