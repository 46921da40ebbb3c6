# SPDX-License-Identifier: LGPL-2.1-or-later
"""How the tree's check scripts report: one line a check, a count at the end.

from report import fail, ok, done   (the script puts tests/helpers on sys.path)
"""

failures = []


def fail(what, detail=''):
    failures.append(what)
    print(f'FAIL: {what}')
    if detail:
        print('  ' + detail.strip().replace('\n', '\n  '))


def ok(what):
    print(f'ok: {what}')


def done(all_pass):
    """The exit status: 1 after any failure, else 0 with @all_pass said."""
    if failures:
        print(f'{len(failures)} failure(s)')
        return 1
    print(all_pass)
    return 0
