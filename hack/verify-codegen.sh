#!/usr/bin/env bash
# Copyright The Switchboard Authors.
# SPDX-License-Identifier: Apache-2.0

# Fails when a generated file differs from what hack/update-codegen.sh writes.
# It regenerates into a scratch copy of the repository, so the working tree is
# never touched.

set -o errexit
set -o nounset
set -o pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SCRATCH="$(mktemp -d -t verify-codegen.XXXXXX)"
trap 'rm -rf "${SCRATCH}"' EXIT

# Copy the sources the generators read, leaving caches and build output behind.
tar -C "${REPO_ROOT}" --exclude=./.git --exclude=./.cache --exclude=./_output -cf - . | tar -C "${SCRATCH}" -xf -

GOBIN="${REPO_ROOT}/_output/tools" "${SCRATCH}/hack/update-codegen.sh" >/dev/null

status=0
for path in pkg hack/api-rules-violations.list; do
  if ! diff -Naupr "${REPO_ROOT}/${path}" "${SCRATCH}/${path}"; then
    status=1
  fi
done

if [[ ${status} -ne 0 ]]; then
  echo "Generated code is out of date: run hack/update-codegen.sh (or make update-codegen) and commit the result." >&2
  exit 1
fi
echo "Generated code is up to date."
