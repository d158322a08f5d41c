"""Where the definitions, values and charts come from: the working tree, or any Git revision.

Git is the source of truth. A plan reads every file through a `Source`, which records what it read so
the revision can be marked `-dirty` only when those files, not unrelated ones, have local changes.
Reading a revision never touches the working tree: blobs are read from the object database and charts
are materialised into a temporary directory.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path, PurePosixPath
from typing import Any

from promote import yamlio
from promote.errors import SourceError, UnknownRevision


class Source:
    """Files relative to a repository root, from the working tree or a commit."""

    def __init__(self, root: Path, revision: str | None = None) -> None:
        self.root = root.resolve()
        self.ref = revision
        self._repo: Any = None
        self._opened = False
        self._open_lock = threading.Lock()
        self._commit: Any = None
        self._read: set[str] = set()
        self._tmp: Path | None = None
        self._materialised: dict[str, Path] = {}
        if revision is not None:
            repo = self._open()
            try:
                self._commit = repo.commit(revision)
            except Exception as e:
                raise UnknownRevision(f"cannot resolve Git revision {revision!r}: no such commit, branch or tag") from e

    def _open(self) -> Any:
        """The Git repository, opened on first need: the working tree is read without it, and importing
        GitPython costs a plan ~50 ms before its first render. So for the working tree, a root outside
        its Git work tree is reported when the revision is asked, not when the source is made."""
        with self._open_lock:  # the revision may be asked from a background thread (Workspace.revision_soon)
            if not self._opened:
                repo: Any = None
                try:
                    import git

                    repo = git.Repo(self.root, search_parent_directories=True)
                except Exception as e:  # not a git checkout: only the working tree can be read
                    if self.ref is not None:
                        raise SourceError(
                            f"cannot read revision {self.ref!r}: {self.root} is not a Git repository"
                        ) from e
                if repo is not None:
                    top = Path(repo.working_tree_dir).resolve()
                    try:
                        self._prefix = self.root.relative_to(top)
                    except ValueError as e:
                        raise SourceError(f"{self.root} is outside the Git work tree {top}") from e
                self._repo, self._opened = repo, True
            return self._repo

    # --- reading -----------------------------------------------------------------------------------

    def _git_path(self, rel: str) -> str:
        return str(PurePosixPath(self._prefix.as_posix()) / rel) if str(self._prefix) != "." else rel

    def _tree_item(self, rel: str) -> Any:
        try:
            return self._commit.tree / self._git_path(rel)
        except KeyError:
            return None

    def _local(self, rel: str) -> Path:
        """The working-tree path of `rel`, refused when it (through `..` or a symlink) leaves the
        repository: promote applies what Git holds, and a file outside it is in no commit."""
        path = self.root / rel
        root = self.root.resolve()
        if not path.resolve().is_relative_to(root):
            raise SourceError(f"{rel} resolves outside the repository ({root}); promote reads only files Git holds")
        return path

    def _inside(self, path: Path, rel: str) -> None:
        """Refuse a directory holding a symlink that leads outside the repository (a chart, say)."""
        root = self.root.resolve()
        for p in path.rglob("*"):
            if p.is_symlink() and not p.resolve().is_relative_to(root):
                raise SourceError(
                    f"{rel}/{p.relative_to(path)} is a symlink out of the repository; promote reads only Git's files"
                )

    def exists(self, rel: str) -> bool:
        """True when the path exists in this source, file or directory."""
        if self._commit is None:
            return self._local(rel).exists()
        return self._tree_item(rel) is not None

    def is_dir(self, rel: str) -> bool:
        """True when the path is a directory in this source."""
        if self._commit is None:
            return self._local(rel).is_dir()
        item = self._tree_item(rel)
        return item is not None and item.type == "tree"

    def read_text(self, rel: str) -> str:
        """Read a file and remember it for the dirty check."""
        self._read.add(rel)
        if self._commit is None:
            try:
                return yamlio.read_text(self._local(rel), name=rel)
            except OSError as e:
                raise SourceError(f"cannot read {rel}: {e.strerror}") from e
        item = self._tree_item(rel)
        if item is None or item.type != "blob":
            raise SourceError(f"cannot read {rel}: no such file at revision {self.ref}")
        data: bytes = item.data_stream.read()
        return yamlio.decode(data, name=f"{rel} at {self.ref}")

    def read_bytes(self, rel: str, limit: int) -> bytes:
        """A file's bytes (a packaged chart), refused past `limit`; remembered for the dirty check."""
        self._read.add(rel)
        if self._commit is None:
            path = self._local(rel)
            self._inside(path, rel)
            try:
                if path.stat().st_size > limit:
                    raise SourceError(f"{rel} is larger than {limit // (1 << 20)} MiB")
                return path.read_bytes()
            except OSError as e:
                raise SourceError(f"cannot read {rel}: {e.strerror}") from e
        item = self._tree_item(rel)
        if item is None or item.type != "blob":
            raise SourceError(f"cannot read {rel}: no such file at revision {self.ref}")
        if item.size > limit:
            raise SourceError(f"{rel} is larger than {limit // (1 << 20)} MiB")
        data: bytes = item.data_stream.read()
        return data

    def list_dir(self, rel: str) -> list[str]:
        """Names of the entries of a directory, sorted; the directory counts as read for the dirty check."""
        # A file deleted (or added) in a listed directory changes what was read, e.g. one app fewer.
        self._read.add(rel)
        if self._commit is None:
            d = self._local(rel)
            return sorted(p.name for p in d.iterdir()) if d.is_dir() else []
        item = self._tree_item(rel)
        if item is None or item.type != "tree":
            return []
        return sorted(child.name for child in item)

    def local_path(self, rel: str) -> Path:
        """A real directory for `rel`, e.g. a chart for helm; a temp copy when reading a commit."""
        self._read.add(rel)
        if self._commit is None:
            path = self._local(rel)
            self._inside(path, rel)
            return path
        if rel in self._materialised:
            return self._materialised[rel]
        item = self._tree_item(rel)
        if item is None:
            raise SourceError(f"cannot read {rel}: no such path at revision {self.ref}")
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="promote-src-"))
        dest = self._tmp / rel
        for blob in item.traverse():
            if blob.type != "blob":
                continue
            target = self._tmp / PurePosixPath(blob.path).relative_to(self._prefix.as_posix())
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob.data_stream.read())
        self._materialised[rel] = dest
        return dest

    # --- identity ----------------------------------------------------------------------------------

    def revision(self) -> str:
        """The commit sha, with `-dirty` when files this source read have uncommitted changes."""
        if self._open() is None:
            return "untracked"
        if self._commit is not None:
            return str(self._commit.hexsha)
        try:
            sha = str(self._repo.head.commit.hexsha)
        except ValueError:
            sha = "0" * 40  # a repository without commits yet
        return sha + ("-dirty" if self.dirty_paths() else "")

    def dirty_paths(self) -> list[str]:
        """Files among those read (or below read directories) with uncommitted or untracked changes."""
        if self._open() is None or self._commit is not None or not self._read:
            return []
        paths = [self._git_path(p) for p in sorted(self._read)]
        try:
            out: str = self._repo.git.status("--porcelain", "--untracked-files=all", "--", *paths)
        except Exception as e:
            raise SourceError(f"cannot ask Git whether {len(paths)} files are modified") from e
        return [line[3:] for line in out.splitlines() if line.strip()]

    def branch(self) -> str | None:
        """The checked-out branch, None on a detached HEAD or outside Git."""
        repo = self._open()
        try:
            return str(repo.active_branch.name) if repo is not None else None
        except Exception:  # detached HEAD (TypeError), or an unborn or damaged repository
            return None

    def short_sha(self) -> str:
        """The abbreviated commit the source reads, for human output."""
        return self.revision()[:7]

    def close(self) -> None:
        """Remove materialised copies."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
