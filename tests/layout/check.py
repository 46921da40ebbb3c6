#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The dependency rules of lib/ (docs/design.md, "Who may use whom").

The build already stops a folder from including another folder's private
headers: each library compiles with only the include directories its rule
allows. This checks what include paths cannot: which system headers a folder
may use, that control/ sees only the engine API of the data plane, that nothing
climbs out of its folder with a relative path, and that the data plane does
not log. Usage: check.py SOURCE_ROOT
"""
import pathlib
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
LOGGING = re.compile(r'\b(syslog|sd_journal_\w+|fprintf\s*\(\s*stderr|perror|printf)\s*\(')

# folder -> (headers it may include from other lib/ folders, system header prefixes it may not use)
SYSTEM_FORBIDDEN_ALL = ('systemd/',)
RULES = {
    'shared': ({}, ('systemd/', 'urcu', 'liburing')),
    'dataplane': ({'shared'}, SYSTEM_FORBIDDEN_ALL),
    'control': ({'shared', 'dataplane:engine.h'}, ('systemd/', 'urcu', 'liburing')),
    'sim': ({'shared', 'dataplane:engine.h', 'dataplane:backend.h'}, ('systemd/', 'urcu', 'liburing')),
    'client': ({'shared'}, ('urcu', 'liburing')),
}


def exported(lib, folder):
    d = lib / folder / 'include'
    return {p.name for p in d.glob('*.h')} if d.is_dir() else set()


def private(lib, folder):
    return {p.name for p in (lib / folder).glob('*.h')}


def main(root):
    root = pathlib.Path(root)
    lib = root / 'lib'
    public = {'iopf/' + p.name for p in (root / 'include' / 'iopf').glob('*.h')}
    errors = []

    loose = [p.name for p in lib.iterdir() if p.is_file() and p.suffix in ('.c', '.h')]
    if loose:
        errors.append(f'lib/: loose source files {loose}: every file belongs to a folder')
    folders = {p.name for p in lib.iterdir() if p.is_dir()}
    if folders != set(RULES):
        errors.append(f'lib/: folders {sorted(folders)}, rules for {sorted(RULES)}')

    for folder, (allowed, forbidden_sys) in RULES.items():
        own = exported(lib, folder) | private(lib, folder)
        may = set(public)
        for a in allowed:
            other, _, header = a.partition(':')
            may |= {header} if header else exported(lib, other)
        for src in sorted((lib / folder).rglob('*.[ch]')):
            rel = src.relative_to(root)
            text = src.read_text()
            for kind, name in INCLUDE.findall(text):
                if kind == '"':
                    if '..' in name:
                        errors.append(f'{rel}: relative include "{name}"')
                    elif name not in own and name not in may:
                        errors.append(f'{rel}: includes "{name}", not allowed in lib/{folder}/')
                elif name.startswith(forbidden_sys):
                    errors.append(f'{rel}: includes <{name}>, not allowed in lib/{folder}/')
            if folder == 'dataplane':
                for m in LOGGING.finditer(text):
                    line = text.count('\n', 0, m.start()) + 1
                    errors.append(f'{rel}:{line}: logging ({m.group(1)}) in the data plane')

    for e in errors:
        print(e)
    print(f'layout: {len(errors)} violations')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else '.'))
