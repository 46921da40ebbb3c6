# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by the test scripts that cache what they build outside the repository
# (tests/kernel/build-kernel.sh, tests/integration/mkroot.sh).
#
# iopf_cache_dir NAME: print where NAME's cache lives when no override is given:
# $XDG_CACHE_HOME/iopfd/NAME, else /var/cache/iopfd/NAME when it can be made and
# written, else ~/.cache/iopfd/NAME.
iopf_cache_dir() {
	if [ -n "${XDG_CACHE_HOME:-}" ]; then
		echo "$XDG_CACHE_HOME/iopfd/$1"
	elif mkdir -p "/var/cache/iopfd/$1" 2>/dev/null && [ -w "/var/cache/iopfd/$1" ]; then
		echo "/var/cache/iopfd/$1"
	else
		echo "${HOME:?}/.cache/iopfd/$1"
	fi
}
