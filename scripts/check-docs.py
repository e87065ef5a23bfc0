#!/usr/bin/env python3
"""The documentation's checks, run by scripts/test.sh:

1. Links: every relative link in the book (docs/), the READMEs and the SDKs' docs points
   at a file that exists, and an anchor (`page.md#part`) at a heading of that page; every
   page of docs/ is in docs/SUMMARY.md and every entry there exists.
2. Truth: no source file, comment or document names an issue number or promises a
   feature for later: the text says what is true now.

mdbook 0.5 does not check links, and mdbook-linkcheck targets older mdbook versions; the
checks here are a few regular expressions over the files, so they live in this script.
Prints every problem with file and line; exits 1 if there is one.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
STALE = re.compile(
    r"\bissues? #?\d+\b|\buntil\b[^.\n]{0,60}\blands?\b|\bonce\b[^.\n]{0,60}\blands?\b"
    r"|\bnot landed\b|\bfuture work\b",
    re.IGNORECASE,
)
TEXT = (".rs", ".md", ".toml", ".sh", ".py", ".wit", ".proto", ".yaml", ".yml")


def tracked():
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return [f for f in out.splitlines() if os.path.exists(os.path.join(ROOT, f))]


def slug(heading):
    """The anchor of a heading, as GitHub and mdbook make it."""
    text = re.sub(r"[`*_\[\]()]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    found = set()
    in_code = False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


def check_links(files, problems):
    for f in files:
        if not f.endswith(".md") or f.startswith(("conformance/", "plugins/")) and "README" not in f:
            continue
        path = os.path.join(ROOT, f)
        in_code = False
        for n, line in enumerate(open(path, encoding="utf-8"), 1):
            if line.startswith("```"):
                in_code = not in_code
            if in_code:
                continue
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target) or target.startswith("mailto"):
                    continue
                file_part, _, anchor = target.partition("#")
                dest = path if not file_part else os.path.normpath(
                    os.path.join(os.path.dirname(path), file_part))
                if not os.path.exists(dest):
                    problems.append(f"{f}:{n}: link to a missing file: {target}")
                elif not dest.startswith(ROOT + os.sep) and dest != ROOT:
                    problems.append(f"{f}:{n}: link out of the repository: {target}")
                elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                    problems.append(f"{f}:{n}: no heading for #{anchor} in {file_part or f}")


def check_summary(problems):
    docs = os.path.join(ROOT, "docs")
    summary = open(os.path.join(docs, "SUMMARY.md"), encoding="utf-8").read()
    listed = set(LINK.findall(summary))
    for entry in listed:
        if not os.path.exists(os.path.join(docs, entry)):
            problems.append(f"docs/SUMMARY.md: missing page {entry}")
    for dirpath, _, names in os.walk(docs):
        for name in names:
            rel = os.path.relpath(os.path.join(dirpath, name), docs)
            if name.endswith(".md") and rel != "SUMMARY.md" and rel not in listed:
                problems.append(f"docs/{rel}: not in docs/SUMMARY.md")


def check_truth(files, problems):
    me = os.path.relpath(os.path.abspath(__file__), ROOT)
    for f in files:
        if f == me or not f.endswith(TEXT) or f.endswith("Cargo.lock"):
            continue
        try:
            text = open(os.path.join(ROOT, f), encoding="utf-8").read()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            m = STALE.search(line)
            if m:
                problems.append(f"{f}:{n}: names an issue or a future landing: '{m.group(0)}'")


def check_settings(problems):
    """Every setting the SQL session knows is in the settings reference."""
    session = open(os.path.join(ROOT, "host/sql/src/session.rs"), encoding="utf-8").read()
    limits = open(os.path.join(ROOT, "host/sql/src/plugins.rs"), encoding="utf-8").read()
    known = re.search(r"unknown setting '\{k\}'; known: ([^\"]*)", session)
    limit_keys = re.search(r"LIMIT_KEYS: &\[&str\] = &\[(.*?)\];", limits, re.S)
    if not known or not limit_keys:
        problems.append("scripts/check-docs.py: cannot find the settings the SQL session knows")
        return
    keys = set(re.findall(r"[a-z][a-z0-9.-]*\.[a-z0-9.-]+", known.group(1)))
    keys |= set(re.findall(r'"([^"]+)"', limit_keys.group(1)))
    page = open(os.path.join(ROOT, "docs/reference/settings.md"), encoding="utf-8").read()
    for key in sorted(keys):
        if f"`{key}`" not in page:
            problems.append(f"docs/reference/settings.md: the setting '{key}' is not described")


def main():
    files = tracked()
    problems = []
    check_links(files, problems)
    check_settings(problems)
    check_summary(problems)
    check_truth(files, problems)
    for p in problems:
        print(p)
    if problems:
        print(f"\n{len(problems)} documentation problem(s)", file=sys.stderr)
        sys.exit(1)
    print("documentation checks passed")


if __name__ == "__main__":
    main()
