#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The bash completion of iopfctl against the iopfctl built here: every command of its
# --help completes, so do its options and --address values, and a partial word narrows.
# Usage: check-completion.sh COMPLETION IOPFCTL
set -uo pipefail
. "$1" || { echo "FAIL: sourcing $1"; exit 1; }
iopfctl=$2
failed=0
comp() { COMP_WORDS=("$iopfctl" "$@"); COMP_CWORD=$#; COMPREPLY=(); _iopfctl; echo "${COMPREPLY[*]}"; }
expect() {
	local want=$1 got
	shift
	got=$(comp "$@")
	if [ "$got" = "$want" ]; then
		echo "ok: iopfctl $* -> $got"
	else
		echo "FAIL: iopfctl $* -> '$got', want '$want'"
		failed=1
	fi
}
help=$("$iopfctl" --help)
commands=$(sed -n '/^Commands:/,/^$/{/^  [a-z]/s/^  \([a-z][a-z-]*\).*/\1/p}' <<<"$help" | xargs)
[ -n "$commands" ] || { echo "FAIL: no commands in iopfctl --help"; exit 1; }
expect "$commands" ""
# a word completes to itself (and maybe longer ones); its first three letters include it
has() {
	local word=$1 got
	shift
	got=$(comp "$@")
	case " $got " in
	*" $word "* | *" $word= "*) echo "ok: iopfctl $* -> $got" ;;
	*) echo "FAIL: iopfctl $* -> '$got', without $word"; failed=1 ;;
	esac
}
for c in $commands; do
	has "$c" "${c:0:3}"
	has "$c" --json "$c"
done
for o in $(grep -oE -- '--[a-z][a-z-]*' <<<"$help" | sort -u); do
	has "$o" "$o"
	has "$o" stats "${o:0:4}"
done
expect "system unix:path=/run/iopfd/control /run/iopfd/control" --address ""
expect "stats status" --address system stat
expect "stats" --address /run/iopfd/control stats
expect "status" -o id --no-legend statu
expect "pretty short off" --json=
expect "short" --json=s
expect "" -o 
[ "$failed" = 0 ] && echo PASS
exit "$failed"
