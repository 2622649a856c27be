#!/usr/bin/env bash
# Copyright The Switchboard Authors.
# SPDX-License-Identifier: Apache-2.0

# Regenerates every generated file from the API types with k8s.io/code-generator's
# kube_codegen.sh, at the version go.mod pins.
#
# OpenAPI rule violations are compared against hack/api-rules-violations.list;
# only the ones apimachinery's own types carry are accepted. To record a new
# one on purpose, run with UPDATE_API_KNOWN_VIOLATIONS=true.

set -o errexit
set -o nounset
set -o pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${REPO_ROOT}"

MODULE="github.com/switchboard-io/switchboard"
BOILERPLATE="${REPO_ROOT}/hack/boilerplate.go.txt"
CODEGEN_PKG="$(go list -m -f '{{.Dir}}' k8s.io/code-generator)"
# The generators are installed here, not into the user's GOPATH/bin.
export GOBIN="${GOBIN:-${REPO_ROOT}/_output/tools}"
mkdir -p "${GOBIN}"

# shellcheck source=/dev/null
source "${CODEGEN_PKG}/kube_codegen.sh"

kube::codegen::gen_helpers \
    --boilerplate "${BOILERPLATE}" \
    "${REPO_ROOT}/pkg/apis"

kube::codegen::gen_openapi \
    --output-dir "${REPO_ROOT}/pkg/generated/openapi" \
    --output-pkg "${MODULE}/pkg/generated/openapi" \
    --output-model-name-file "zz_generated.model_name.go" \
    --report-filename "${REPO_ROOT}/hack/api-rules-violations.list" \
    ${UPDATE_API_KNOWN_VIOLATIONS:+--update-report} \
    --boilerplate "${BOILERPLATE}" \
    "${REPO_ROOT}/pkg/apis"

kube::codegen::gen_client \
    --with-watch \
    --with-applyconfig \
    --applyconfig-openapi-schema <(go run "${MODULE}/pkg/generated/openapi/cmd/models-schema") \
    --output-dir "${REPO_ROOT}/pkg/generated" \
    --output-pkg "${MODULE}/pkg/generated" \
    --boilerplate "${BOILERPLATE}" \
    "${REPO_ROOT}/pkg/apis"
