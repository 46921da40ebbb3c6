#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The man pages render cleanly and say what the programs do.

For each built page: groff -ww -z -man and man --warnings -l print nothing on
standard error, and the rendered text is not empty. Against the sources:
every key of conf/iopfd.conf is documented in iopfd.conf(5) under its section,
every long option and command a program's --help lists appears in its page,
and every page this tree ships that another one refers to exists.

Usage: check-man.py --conf conf/iopfd.conf --page PAGE[:PROGRAM] ...
PAGE is a built page (e.g. build/man/iopfd.8); PROGRAM, when given, is the
binary whose --help the page documents.
"""
import argparse
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests/helpers'))
from report import done, fail, ok  # noqa: E402


def render(page):
    env = dict(os.environ, LC_ALL='C.UTF-8', MANWIDTH='80', MAN_KEEP_FORMATTING='0')
    for cmd, says in ((['groff', '-ww', '-z', '-man', '-Tutf8'], 'groff -ww -z -man'),
                      (['man', '--warnings', '-E', 'UTF-8', '-l'], 'man --warnings -l')):
        p = subprocess.run([*cmd, page], capture_output=True, text=True, env=env)
        if p.returncode or p.stderr.strip():
            fail(f'{page}: {says} warns', p.stderr)
        else:
            ok(f'{os.path.basename(page)}: {says} is silent')
    # man's text as a reader sees it, without overstriking
    return re.sub(r'.\x08', '', p.stdout)


def help_of(program):
    p = subprocess.run([program, '--help'], capture_output=True, text=True)
    if p.returncode:
        fail(f'{program} --help exits {p.returncode}', p.stderr)
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--conf', required=True)
    ap.add_argument('--page', action='append', required=True)
    a = ap.parse_args()

    texts = {}
    for spec in a.page:
        page, _, program = spec.partition(':')
        name = os.path.basename(page)
        text = render(page)
        if len(text.split()) < 100:
            fail(f'{name}: renders to almost nothing', text[:400])
        texts[name] = text
        if not program:
            continue
        help_text = help_of(program)
        options = sorted(set(re.findall(r'(?<![\w-])(--[a-z][a-z-]*)', help_text)))
        missing = [o for o in options if not re.search(re.escape(o) + r'(?![a-z-])', text)]
        if missing:
            fail(f'{name} lacks options of {os.path.basename(program)} --help: '
                 + ', '.join(missing))
        else:
            ok(f'{name}: documents all {len(options)} long options of --help')
        commands = re.search(r'^Commands:\n((?:  .*\n|\s*\n)*)', help_text, re.M)
        if commands:
            names = re.findall(r'^  (\w[\w-]*)', commands.group(1), re.M)
            missing = [c for c in names if not re.search(r'^\s+' + re.escape(c) + r'\b', text, re.M)]
            if missing:
                fail(f'{name} lacks commands of --help: {", ".join(missing)}')
            else:
                ok(f'{name}: documents all {len(names)} commands of --help')

    conf_page = texts.get('iopfd.conf.5')
    if conf_page is None:
        fail('no iopfd.conf.5 among the pages')
    else:
        section, keys = None, []
        for line in open(a.conf):
            m = re.match(r'\s*\[(\w+)\]', line)
            if m:
                section = m.group(1)
            m = re.match(r'\s*#?\s*([A-Z]\w+)=', line)
            if m and section:
                keys.append((section, m.group(1)))
        if not keys:
            fail(f'no keys found in {a.conf}')
        # the page's sections: "[Daemon] SECTION" up to the next heading
        parts = re.split(r'^\[(\w+)\] SECTION$', conf_page, flags=re.M)
        by_section = {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}
        missing = [f'[{s}] {k}=' for s, k in keys
                   if not re.search(r'^\s+' + k + '=', by_section.get(s, ''), re.M)]
        if missing:
            fail('iopfd.conf.5 lacks keys of iopfd.conf: ' + ', '.join(missing))
        else:
            ok(f'iopfd.conf.5: documents all {len(keys)} keys of {os.path.basename(a.conf)}')

    ours = {n.rsplit('.', 1)[0]: n.rsplit('.', 1)[1] for n in texts}
    for name, text in texts.items():
        for ref, sec in re.findall(r'\b([a-z][\w.-]*)\((\d)\)', text):
            if ref in ours and ours[ref] != sec:
                fail(f'{name} refers to {ref}({sec}), which is {ref}({ours[ref]})')
            if (ref.startswith(('iopf', 'libiopf', 'org.iopfd')) and ref not in ours):
                fail(f'{name} refers to {ref}({sec}), which this tree does not ship')

    return done('all man pages pass')


if __name__ == '__main__':
    sys.exit(main())
