#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""libiopf-client's ABI, three ways that must agree.

The built library's soname is libiopf-client.so.0; the functions it exports
are exactly those of the version script (lib/client/libiopf-client.sym), each
versioned LIBIOPF_CLIENT_0 (nothing of libiopf-shared leaks); and the Debian
symbols file (debian/libiopf-client0.symbols) lists exactly them, so a symbol
added to one and not the others fails here rather than in dpkg-gensymbols.

Usage: check-abi.py --lib LIB.so --sym FILE.sym --symbols FILE.symbols
"""
import argparse
import re
import subprocess
import sys

SONAME = 'libiopf-client.so.0'
VERSION = 'LIBIOPF_CLIENT_0'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--lib', required=True)
    ap.add_argument('--sym', required=True)
    ap.add_argument('--symbols', required=True)
    a = ap.parse_args()
    failures = []

    def check(ok, what, detail=''):
        print(f'{"ok" if ok else "FAIL"}: {what}')
        if not ok:
            failures.append(what)
            if detail:
                print('  ' + str(detail))

    dyn = subprocess.run(['readelf', '-dW', a.lib], capture_output=True, text=True, check=True)
    m = re.search(r'\(SONAME\)\s+Library soname: \[([^]]+)\]', dyn.stdout)
    check(m and m.group(1) == SONAME, f'soname {SONAME}', m.group(1) if m else 'none')

    syms = subprocess.run(['readelf', '--dyn-syms', '-W', a.lib], capture_output=True,
                          text=True, check=True)
    exported, unversioned, other = set(), [], []
    for line in syms.stdout.splitlines():
        f = line.split()
        # Num: Value Size Type Bind Vis Ndx Name
        if len(f) < 8 or not f[0].endswith(':') or f[6] == 'UND' or f[4] not in ('GLOBAL', 'WEAK'):
            continue
        name, _, version = f[7].partition('@')
        version = version.lstrip('@')
        if name == VERSION and f[3] == 'OBJECT':
            continue  # the version definition itself
        if not version:
            unversioned.append(name)
        elif version != VERSION:
            other.append(f[7])
        exported.add(name)
    check(not unversioned, f'every exported symbol is versioned', unversioned)
    check(not other, f'every exported symbol is {VERSION}', other)

    text = re.sub(r'/\*.*?\*/', '', open(a.sym).read(), flags=re.S)
    node = re.search(VERSION + r'\s*\{\s*global:(.*?)local:', text, re.S)
    script = set(re.findall(r'\b([A-Za-z_]\w*)\s*;', node.group(1))) if node else set()
    check(script and exported == script, 'the library exports exactly the version script',
          f'only exported: {sorted(exported - script)}; only in the script: '
          f'{sorted(script - exported)}')

    listed = set()
    for line in open(a.symbols):
        m = re.match(r'\s+(\S+)@(\S+)\s', line)
        if m and m.group(1) != VERSION:
            listed.add(m.group(1))
            if m.group(2) != VERSION:
                failures.append(line)
                print(f'FAIL: {a.symbols}: {line.strip()} is not {VERSION}')
    check(listed == exported, 'the Debian symbols file lists exactly the exports',
          f'only exported: {sorted(exported - listed)}; only listed: {sorted(listed - exported)}')
    first = open(a.symbols).readline().split()
    check(first[:2] == [SONAME, 'libiopf-client0'], f'the symbols file is for {SONAME}', first)

    print(f'{len(exported)} symbols' if not failures else f'{len(failures)} failure(s)')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
