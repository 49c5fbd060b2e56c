"""Whether files svgap is about to load as code (pickles, a model's weights) can have been changed by someone else.

Loading a pickle runs whatever it says, so a folder another user could write into is as good as their code. A tree
is trusted when nothing in it is a symbolic link (which could point anywhere), everything belongs to this user (or
root) and nothing is writable by other users. Used by the model cache (workloads/arithmetic/cache.py) and by a
study's restore (studies/study.py, before Tune unpickles its state).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path


def untrusted(path: str | Path, *, group_may_write: bool = False) -> str | None:
    """Why the tree at `path` may have been written by another user, or None. group_may_write: a folder that follows
    a umask of 002 (the user's own group) is accepted."""
    me = os.geteuid()
    unsafe = stat.S_IWOTH | (0 if group_may_write else stat.S_IWGRP)
    root = Path(path)
    for p in [root, *sorted(root.rglob("*"))]:
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            return f"{p} is a symbolic link"
        if st.st_uid not in (me, 0):
            return f"{p} belongs to another user (uid {st.st_uid})"
        if st.st_mode & unsafe:
            return f"{p} is writable by other users"
    return None
