#!/usr/bin/env python3
"""Every repository path a Markdown file names in backticks exists.

Generated outputs (git-ignored paths) are allowed. A path is a backticked word starting with one of the top-level folders (or `.config/`,
`.ci/`), read relative to the repository root or to the Markdown file's own folder; a `:line`
or `::item` suffix and a trailing `/` are ignored. Exit status 1 lists the paths that do not
exist, with the file that names them.
"""
import re
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
tops = ("crates/", "src-tauri/", "ui/", "tests/", "scripts/", ".config/", ".ci/", "src/")
pattern = re.compile(r"`((?:%s)[A-Za-z0-9_.*/-]+)" % "|".join(re.escape(t) for t in tops))
files = subprocess.run(["git", "ls-files", "*.md"], cwd=root, capture_output=True, text=True,
                       check=True).stdout.split()


def ignored(path: str) -> bool:
    probe = path.replace("*", "x")
    return any(
        subprocess.run(["git", "check-ignore", "-q", "--no-index", p], cwd=root).returncode == 0
        for p in (probe, probe + "/x")
    )


missing = []
for name in files:
    md = root / name
    for path in pattern.findall(md.read_text(encoding="utf-8")):
        path = path.split(":")[0].rstrip("/")
        if "*" in path:
            found = any(root.glob(path)) or any(md.parent.glob(path))
        else:
            found = (root / path).exists() or (md.parent / path).exists()
        if not found and ignored(path):
            found = True  # a generated output (git-ignored), made by a build or a test
        if not found:
            missing.append(f"{name}: `{path}` does not exist")
for line in missing:
    print(line, file=sys.stderr)
sys.exit(1 if missing else 0)
