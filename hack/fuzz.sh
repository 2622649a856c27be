#!/usr/bin/env bash
# Copyright The Switchboard Authors.
# SPDX-License-Identifier: Apache-2.0

# Runs every go test -fuzz target in the repository, one after another, each
# for the same time (go test runs one fuzz target of one package at a time).
# The seed corpora (f.Add and testdata/fuzz/) run with every go test too;
# this explores beyond them. A failing input is written to the package's
# testdata/fuzz/<target>/, where it stays a regression test once committed.
#
#   hack/fuzz.sh [fuzz time per target]     (make fuzz, FUZZTIME=2m)
#
# make test runs it with FUZZTIME=10s.

set -o errexit
set -o nounset
set -o pipefail

fuzztime="${1:-${FUZZTIME:-2m}}"
go="${GO:-go}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${root}"

targets=0
while IFS= read -r file; do
  dir="$(dirname "${file}")"
  while IFS= read -r name; do
    echo "== ${name} in ./${dir}, for ${fuzztime}"
    if ! "${go}" test -run '^$' -fuzz "^${name}\$" -fuzztime "${fuzztime}" "./${dir}"; then
      # The input is in the checkout, which CI throws away: show it.
      for input in "${dir}/testdata/fuzz/${name}"/*; do
        if [[ -n "$(git status --porcelain -- "${input}")" ]]; then
          echo "-- the failing input, ${input}: put it there to run it again"
          cat "${input}"
        fi
      done
      exit 1
    fi
    targets=$((targets + 1))
  done < <(grep -o '^func Fuzz[A-Za-z0-9_]*' "${file}" | cut -d' ' -f2)
done < <(git ls-files --cached --others --exclude-standard -- '*_test.go' | xargs grep -l '^func Fuzz' | sort)

if [[ "${targets}" -eq 0 ]]; then
  echo "no fuzz targets found" >&2
  exit 1
fi
echo "${targets} fuzz targets ran for ${fuzztime} each, with no failure"
