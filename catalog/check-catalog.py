#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Check catalog/iopfd.catalog: each entry has an ID of 32 hex digits (unique), Subject:,
Defined-By:, Documentation: and a text; its IDs are exactly the IOPF_MESSAGE_* of
daemon/log.h; and journalctl --update-catalog builds a database from it that
journalctl --list-catalog reads back.

Usage: check-catalog.py CATALOG LOG_H. Exit 0 pass, 1 fail."""
import os
import re
import shutil
import subprocess
import sys
import tempfile


def parse(text):
    entries, cur = {}, None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("#") and cur is None:
            continue
        m = re.match(r"^-- ([0-9a-f]{32})$", line)
        if m:
            if m.group(1) in entries:
                raise ValueError(f"line {n}: ID {m.group(1)} twice")
            cur = entries[m.group(1)] = {"headers": {}, "text": [], "in_headers": True}
            continue
        if line.startswith("--"):
            raise ValueError(f"line {n}: not an ID line: {line}")
        if cur is None:
            if line.strip():
                raise ValueError(f"line {n}: text before the first entry")
            continue
        if cur["in_headers"]:
            if not line.strip():
                cur["in_headers"] = False
                continue
            m = re.match(r"^([A-Za-z-]+): (.+)$", line)
            if not m:
                raise ValueError(f"line {n}: not a header: {line}")
            cur["headers"].setdefault(m.group(1), []).append(m.group(2))
        else:
            cur["text"].append(line)
    return entries


def main():
    catalog, log_h = sys.argv[1], sys.argv[2]
    with open(catalog) as f:
        entries = parse(f.read())
    errors = []
    for mid, e in entries.items():
        for h in ("Subject", "Defined-By", "Documentation"):
            if h not in e["headers"]:
                errors.append(f"{mid}: no {h}:")
        for doc in e["headers"].get("Documentation", []):
            if not re.match(r"^(man:[\w.@-]+\(\d\)|https?://\S+)$", doc):
                errors.append(f"{mid}: Documentation: {doc} is no man: or http(s) URL")
        if not any(l.strip() for l in e["text"]):
            errors.append(f"{mid}: no text")
    with open(log_h) as f:
        defined = set(re.findall(r'#define IOPF_MESSAGE_\w+\s+"([0-9a-f]{32})"', f.read()))
    for mid in sorted(defined - entries.keys()):
        errors.append(f"{mid}: defined in log.h, not in the catalog")
    for mid in sorted(entries.keys() - defined):
        errors.append(f"{mid}: in the catalog, defined nowhere in log.h")
    if shutil.which("journalctl"):
        with tempfile.TemporaryDirectory() as root:
            d = os.path.join(root, "usr/lib/systemd/catalog")
            os.makedirs(d)
            shutil.copy(catalog, d)
            p = subprocess.run(["journalctl", f"--root={root}", "--update-catalog"],
                               capture_output=True, text=True)
            if p.returncode != 0 or p.stderr.strip():
                errors.append(f"journalctl --update-catalog: {p.returncode} {p.stderr}")
            p = subprocess.run(["journalctl", f"--root={root}", "--list-catalog"],
                               capture_output=True, text=True)
            listed = set(re.findall(r"^([0-9a-f]{32}) ", p.stdout, re.M))
            if listed != entries.keys():
                errors.append(f"journalctl --list-catalog lists {sorted(listed)}:\n{p.stdout}"
                              f"{p.stderr}")
    for e in errors:
        print(f"FAIL: {e}")
    print(f"{len(entries)} entries" if not errors else "")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
