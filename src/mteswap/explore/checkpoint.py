"""Checkpoints: the whole search state pickled to DIR/state.pkl, written atomically (temp file,
fsync, rename), so a `kill -9` at any moment leaves the previous or the new checkpoint, never a
torn one. A BFS checkpoint is taken between two chunks: resuming re-runs at most the chunks
that were in flight, and merging is deterministic, so the result and the counts are those of an
uninterrupted run."""

from __future__ import annotations

import os
import pickle
import tempfile

FILE = "state.pkl"
VERSION = 3                    # 2: the search state records sometimes properties reached;
#                                3: and the frontier's sleep sets (bfs.py `por`)


def save(directory: str, kind: str, state, options: dict) -> None:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".state-")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump({"version": VERSION, "kind": kind, "state": state, "options": options}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(directory, FILE))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(directory: str) -> dict:
    path = os.path.join(directory, FILE)
    with open(path, "rb") as f:
        data = pickle.load(f)
    if data.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint version {data.get('version')}, expected {VERSION}")
    return data
