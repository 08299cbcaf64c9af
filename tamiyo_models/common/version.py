"""Which code produced a raw run: the package version, a hash of the library's sources, and the git commit
when the code runs from a git checkout. The source hash identifies the code even outside git."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

PACKAGE_VERSION = "0.1.0"
_LIBRARY = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    digest = hashlib.sha256()
    for path in sorted(_LIBRARY.rglob("*.py")):
        digest.update(str(path.relative_to(_LIBRARY)).encode())
        digest.update(path.read_bytes())
    commit, dirty = None, None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_LIBRARY, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", str(_LIBRARY)],
                cwd=_LIBRARY, capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "package": PACKAGE_VERSION,
        "source_sha256": digest.hexdigest()[:16],
        "git_commit": commit,
        "git_dirty": dirty,
    }
