#!/usr/bin/env bash
# shellcheck shell=bash
# Shared by hack/local-up.sh and hack/test-e2e.sh: makes sure every binary
# the local topology runs exists (building what is missing) and exports
# their paths for the Go code that starts it.

# Must be sourced after hack/versions.sh, from the repository root.
topology::prepare() {
  "${SWITCHBOARD_ROOT}/hack/install-deps.sh" >/dev/null
  make -C "${SWITCHBOARD_ROOT}" --no-print-directory build
  export SWITCHBOARD_APISERVER_BIN="${SWITCHBOARD_ROOT}/_output/bin/switchboard-apiserver"
  export SWITCHBOARD_AGENT_BIN="${SWITCHBOARD_ROOT}/_output/bin/switchboard-agent"
  export SWITCHBOARD_RUN_DIR="${SWITCHBOARD_RUN_DIR:-${SWITCHBOARD_ROOT}/_output/local-up}"
  # The hub forwarder of isolated members (topology forward).
  SWITCHBOARD_TOPOLOGY_BIN="$(topology::tool)"
  export SWITCHBOARD_TOPOLOGY_BIN
}

# topology::tool builds the Go program that starts and stops the topology.
topology::tool() {
  local bin="${SWITCHBOARD_ROOT}/_output/bin/topology"
  (cd "${SWITCHBOARD_ROOT}" && go build -o "${bin}" ./test/cmd/topology)
  echo "${bin}"
}
