#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The tree follows its own .clang-format: check every tracked C file, or with
# --fix rewrite them. Usage: scripts/check-format.sh [--fix] [FILE...]
set -euo pipefail
cd "$(dirname "$0")/.."

fix=0
if [ "${1:-}" = --fix ]; then
	fix=1
	shift
fi
command -v clang-format >/dev/null || { echo "check-format: clang-format is missing (scripts/deps.sh test)" >&2; exit 2; }
if [ $# -eq 0 ]; then
	mapfile -t files < <(git ls-files '*.c' '*.h')
else
	files=("$@")
fi
if [ "$fix" -eq 1 ]; then
	clang-format -i "${files[@]}"
	exit 0
fi
bad=()
for f in "${files[@]}"; do
	clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
	echo "check-format: not formatted (scripts/check-format.sh --fix FILE shows the fix):" >&2
	printf '  %s\n' "${bad[@]}" >&2
	exit 1
fi
echo "check-format: ${#files[@]} files formatted"
