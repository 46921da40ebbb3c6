#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The installed headers, as a tenant's compiler sees them.

Each header of include/iopf/ that meson installs must compile
  - alone, as C99 and C11 with -pedantic-errors, and as C++11 and C++17;
  - after <linux/iommufd.h> and before it (the kernel uAPI compat is private:
    lib/shared/include/uapi.h), and define nothing in the kernel's namespace
    (IOMMU*, iommu_*), so no version of that header can collide with it;
  - with C linkage from C++: every symbol of the version script is declared by
    the headers and referenced unmangled by a C++ object;
  - without what would pin the ABI: no array member sized by a constant, no
    *_MAX enumerator (iopfd's own _IOPF_REASON_MAX stays invisible to tenants).

The Debian 12 host has no <linux/iommufd.h> (its uAPI headers are 6.1's), so
the versions checked are those at hand: the kernels tests/kernel built
(KERNEL_CACHE/*/headers: -Dkernel-cache=, $IOPF_KERNEL_CACHE or where
tests/cache-dir.sh puts it), else the one of each kernel source tarball
(/usr/src/linux-source-*.tar.xz from scripts/deps.sh test, and the ones
tests/kernel/fetch-source.sh cached), extracted once into WORKDIR. At least one
is required.

Usage: check-headers.py --cc CC [--cxx CXX] --include DIR --sym FILE
                        --workdir DIR [--kernel-cache DIR] HEADER...
CC may be several words (meson's compiler command). HEADER is relative to DIR.
"""
import glob
import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile

WARN = ['-Wall', '-Wextra', '-Werror', '-Wstrict-prototypes', '-Wmissing-prototypes',
        '-Wundef', '-Wshadow']
WARN_CXX = ['-Wall', '-Wextra', '-Werror', '-Wundef', '-Wshadow', '-Wold-style-cast']

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'helpers'))
from report import done, fail, ok  # noqa: E402


def compile_src(cmd, src, suffix, tmp, extra=(), out=None):
    path = os.path.join(tmp, 'tu' + suffix)
    with open(path, 'w') as f:
        f.write(src)
    args = [*cmd, *extra, '-c', path, '-o', out or os.devnull]
    p = subprocess.run(args, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def symbols(sym_file):
    text = re.sub(r'/\*.*?\*/', '', open(sym_file).read(), flags=re.S)
    m = re.search(r'global:(.*?)local:', text, re.S)
    return re.findall(r'\b([A-Za-z_]\w*)\s*;', m.group(1)) if m else []


def own_lines(preprocessed, header):
    """The lines of the preprocessor output that come from @header itself."""
    keep, out = False, []
    for line in preprocessed.splitlines():
        m = re.match(r'#\s*\d+\s+"([^"]+)"', line)
        if m:
            keep = m.group(1).endswith(header)
            continue
        if keep:
            out.append(line)
    return '\n'.join(out)


def cache_dirs(name, override):
    """Where tests/cache-dir.sh puts NAME's cache, every candidate (or the override)."""
    if override:
        return [override]
    roots = []
    if os.environ.get('XDG_CACHE_HOME'):
        roots.append(os.path.join(os.environ['XDG_CACHE_HOME'], 'iopfd'))
    roots.append('/var/cache/iopfd')
    if os.environ.get('HOME'):
        roots.append(os.path.join(os.environ['HOME'], '.cache', 'iopfd'))
    return [os.path.join(r, name) for r in roots]


def major_minor(release):
    m = re.match(r'(\d+)\.(\d+)', release)
    return f'{m.group(1)}.{m.group(2)}' if m else release


def uapi_versions(cc, workdir, kernel_cache):
    """{version: include dir holding linux/iommufd.h}, one per kernel version at hand."""
    found = {}
    p = subprocess.run([*cc, '-E', '-x', 'c', '-'], input=b'#include <linux/iommufd.h>\n',
                       capture_output=True)
    if p.returncode == 0:
        found['host'] = ''
    kernel_cache = kernel_cache or os.environ.get('IOPF_KERNEL_CACHE', '')
    for kdir in cache_dirs('kernel', kernel_cache):
        for hdr in sorted(glob.glob(os.path.join(kdir, '*', 'headers', 'include', 'linux',
                                                 'iommufd.h'))):
            build = hdr.split(os.sep + 'headers' + os.sep)[0]
            try:
                release = open(os.path.join(build, 'kernel.release')).read().strip()
            except OSError:
                continue
            found.setdefault(major_minor(release), os.path.dirname(os.path.dirname(hdr)))
    tarballs = glob.glob('/usr/src/linux-source-*.tar.xz')
    for sdir in cache_dirs('kernel-source', os.environ.get('IOPF_SOURCE_CACHE', '')):
        tarballs += glob.glob(os.path.join(sdir, '*', 'linux-source-*.tar.xz'))
    for tb in sorted(tarballs):
        version = re.sub(r'^linux-source-|\.tar\.xz$', '', os.path.basename(tb))
        if version in found:
            continue
        st = os.stat(tb)
        out = os.path.join(workdir, f'{version}-{st.st_size}-{int(st.st_mtime)}')
        hdr = os.path.join(out, 'linux', 'iommufd.h')
        if not os.path.exists(hdr):
            tmp = out + '.tmp'
            subprocess.run(['rm', '-rf', tmp], check=True)
            os.makedirs(tmp)
            member = f'linux-source-{version}/include/uapi/linux/iommufd.h'
            p = subprocess.run(['tar', '-xJf', tb, '-C', tmp, '--occurrence=1', member],
                               capture_output=True, text=True)
            src = os.path.join(tmp, member)
            if p.returncode or not os.path.exists(src):
                print(f'note: no iommufd.h in {tb}: {p.stderr.strip()}')
                continue
            os.makedirs(os.path.join(tmp, 'linux'), exist_ok=True)
            os.rename(src, os.path.join(tmp, 'linux', 'iommufd.h'))
            subprocess.run(['rm', '-rf', os.path.join(tmp, f'linux-source-{version}')], check=True)
            subprocess.run(['rm', '-rf', out], check=True)
            os.rename(tmp, out)
        found[version] = out
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--cc', required=True)
    ap.add_argument('--cxx', default='')
    ap.add_argument('--include', required=True)
    ap.add_argument('--sym', required=True)
    ap.add_argument('--workdir', required=True)
    ap.add_argument('--kernel-cache', default='')
    ap.add_argument('headers', nargs='+')
    a = ap.parse_args()
    cc = shlex.split(a.cc)
    inc = ['-I' + a.include]
    if not a.cxx:
        fail('no C++ compiler (scripts/deps.sh test installs g++)')
    cxx = shlex.split(a.cxx)

    os.makedirs(a.workdir, exist_ok=True)
    uapis = uapi_versions(cc, a.workdir, a.kernel_cache)
    if uapis:
        print('<linux/iommufd.h> of: ' + ', '.join(sorted(uapis)))
    else:
        fail('no <linux/iommufd.h> of any version: not on the host, no kernel built by '
             'tests/kernel, no /usr/src/linux-source-*.tar.xz (scripts/deps.sh test installs one)')

    with tempfile.TemporaryDirectory() as tmp:
        for h in a.headers:
            inc_h = f'#include <{h}>\n'
            uapi = '#include <linux/iommufd.h>\n'
            # (name, source, extra include dirs)
            variants = [('alone', inc_h, []), ('twice', inc_h + inc_h, [])]
            for version, d in sorted(uapis.items()):
                dirs = ['-isystem', d] if d else []  # the kernel's headers are not -pedantic clean
                variants += [(f'after <linux/iommufd.h> of {version}', uapi + inc_h, dirs),
                             (f'before <linux/iommufd.h> of {version}', inc_h + uapi, dirs)]
            langs = [(cc, '.c', 'c99', WARN), (cc, '.c', 'c11', WARN)]
            if cxx:
                langs += [(cxx, '.cc', 'c++11', WARN_CXX), (cxx, '.cc', 'c++17', WARN_CXX)]
            for cmd, suffix, std, warn in langs:
                for name, src, dirs in variants:
                    # a C translation unit must not be empty (-pedantic)
                    body = src + ('int iopf_tu_nonempty;\n' if suffix == '.c' else '')
                    rc, log = compile_src(cmd, body, suffix, tmp,
                                          [f'-std={std}', '-pedantic-errors', *warn, *inc, *dirs])
                    what = f'{h} as {std}, {name}'
                    if rc:
                        fail(what, log)
                    else:
                        ok(f'{what}')

            # what the header itself declares, after the preprocessor
            p = subprocess.run([*cc, '-std=c11', *inc, '-E', '-x', 'c', '-'], input=inc_h,
                               capture_output=True, text=True)
            if p.returncode:
                fail(f'{h}: preprocessing', p.stderr)
                continue
            code = own_lines(p.stdout, h)
            kernel = sorted(set(re.findall(r'\b(?:IOMMU\w*|iommu_\w+)', code)))
            if kernel:
                fail(f'{h} uses the kernel uAPI namespace: {", ".join(kernel)}')
            arrays = re.findall(r'\w+\s*\[\s*[^\]\s][^\]]*\]\s*;', code)
            if arrays:
                fail(f'{h} has fixed-size arrays in its ABI: {"; ".join(arrays)}')
            for body in re.findall(r'\benum\b[^{;]*\{([^}]*)\}', code):
                counts = re.findall(r'\b\w+_MAX\b', body)
                if counts:
                    fail(f'{h} has count enumerators in its ABI: {", ".join(counts)}')
            m = subprocess.run([*cc, '-std=c11', *inc, '-E', '-dM', '-x', 'c', '-'], input=inc_h,
                               capture_output=True, text=True)
            base = subprocess.run([*cc, '-std=c11', '-E', '-dM', '-x', 'c', '-'],
                                  input='#include <stddef.h>\n#include <stdint.h>\n',
                                  capture_output=True, text=True)
            names = lambda out: set(re.findall(r'^#define (\w+)', out, re.M))
            foreign = sorted(n for n in names(m.stdout) - names(base.stdout)
                             if not n.startswith(('IOPF_', 'iopf_')))
            if foreign:
                fail(f'{h} defines macros outside IOPF_/iopf_: {", ".join(foreign)}')
            else:
                ok(f'{h} keeps to the iopf namespace')

        # the tree sees the same enumerators as tenants, plus its own counts and nothing else
        def enumerators(extra):
            p = subprocess.run([*cc, '-std=c11', *inc, *extra, '-E', '-P', '-x', 'c', '-'],
                               input=''.join(f'#include <{h}>\n' for h in a.headers),
                               capture_output=True, text=True)
            return [e for body in re.findall(r'\benum\b[^{;]*\{([^}]*)\}', p.stdout)
                    for e in re.findall(r'(?:^|,)\s*([A-Za-z_]\w*)', body)]
        tenant, tree = enumerators([]), enumerators(['-DIOPF_BUILDING_IOPFD=1'])
        extra = [e for e in tree if e not in tenant]
        if [e for e in tree if e in tenant] != tenant or extra != ['_IOPF_REASON_MAX']:
            fail('the tree and tenants must see the same enumerators but _IOPF_REASON_MAX',
                 f'tree only: {extra}; tenants: {tenant}')
        else:
            ok(f'tenants see all {len(tenant)} enumerators, the tree also _IOPF_REASON_MAX')

        # iopfd's own count of reasons is not for tenants
        all_inc = ''.join(f'#include <{h}>\n' for h in a.headers)
        rc, log = compile_src(cc, all_inc + 'int n = _IOPF_REASON_MAX;\n', '.c', tmp,
                              ['-std=c11', *inc])
        if rc == 0 or '_IOPF_REASON_MAX' not in log:
            fail('_IOPF_REASON_MAX is visible to tenants', log)
        else:
            print('ok: _IOPF_REASON_MAX is not visible to tenants')

        # every exported symbol is declared, with C linkage
        syms = symbols(a.sym)
        if not syms:
            fail(f'no symbols in {a.sym}')
        if cxx and syms:
            refs = ''.join(f'  (void *)&{s},\n' for s in syms)
            src = all_inc + f'void *const iopf_refs[] = {{\n{refs}}};\n'
            obj = os.path.join(tmp, 'refs.o')
            rc, log = compile_src(cxx, src, '.cc', tmp, ['-std=c++11', '-fpermissive', '-w', *inc],
                                  out=obj)
            if rc:
                fail('the version script names symbols the headers do not declare', log)
            else:
                p = subprocess.run(['nm', '-u', obj], capture_output=True, text=True)
                undefined = set(re.findall(r'U (\S+)', p.stdout))
                mangled = [u for u in undefined if u.startswith('_Z')]
                missing = [s for s in syms if s not in undefined]
                if mangled or missing:
                    fail('C++ sees the functions without C linkage',
                         f'mangled: {mangled}\nnot referenced unmangled: {missing}')
                else:
                    ok(f'{len(syms)} symbols declared with C linkage')

    return done('all installed headers pass')


if __name__ == '__main__':
    sys.exit(main())
