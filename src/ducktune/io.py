"""Atomic writes: a crash never leaves a half-written file or folder that a later step picks up.

Files are written to a temporary sibling and renamed over the target (rename is atomic on
POSIX within one filesystem). Folders are built under a temporary sibling name and renamed
into place; an existing target is swapped with the new one in one step (Linux's
renameat2(RENAME_EXCHANGE)), so the target is always one whole folder, the old or the new.
Elsewhere the old folder is moved aside first, and a later write puts it back if a crash
came between the two renames.

Temporaries are named `.TARGET.PID.XXXXXXXX.tmp`: leftovers of a process that died (SIGKILL,
power loss) are removed by the next write of the same target; a live writer's are never touched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import struct
import sys
import tempfile
from pathlib import Path
from typing import Iterator


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def current_umask() -> int:
    """The process's umask: from /proc on Linux (no change to process state), else by setting it
    and straight back (os.umask is the only portable reader)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """Open a temporary file next to `path`; on success rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it private; the result is an ordinary file
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _raise_named(exc, path)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> None:
    with atomic_file(path) as handle:
        json.dump(obj, handle, indent=indent, ensure_ascii=False)
        handle.write("\n")


def read_json_file(path: str | os.PathLike, error: type[Exception] | None = None, hint: str = ""):
    """The JSON value in `path`; a file that is not JSON (or not UTF-8) is `error` (UserError by default)
    in one line, `PATH: corrupt (why)` and `hint` after it, never a JSONDecodeError traceback."""
    if error is None:
        from ducktune.errors import UserError as error
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: corrupt ({exc}){hint}") from None


def optional_json_field(path: str | os.PathLike, key: str):
    """`key` of the JSON object in an optional file (None: no file, unreadable, or not an object)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def holds_working_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is the working folder or one above it: replacing or moving it aside would take
    the folder a command runs in away."""
    here = Path(os.path.abspath(path))
    return Path.cwd() == here or here in Path.cwd().parents


def unwritable(folder: str | os.PathLike) -> str | None:
    """Why nothing can be created in `folder` (or, while it does not exist, in the nearest folder above
    it that does): "read-only file system" or "permission denied"; None when it can. Asked before a
    command's work starts, so a read-only run folder is one line, not an OSError after minutes."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    return "permission denied"


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; when the block succeeds it replaces `path` in one rename.

    If the block raises, the temporary folder is deleted and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_named(exc, path, tmp)
        raise
    replace_dir(tmp, path)


def _raise_named(exc: BaseException, path: Path, tmp: Path | None = None) -> None:
    """A write that fails for lack of space (or over the file size limit) says nothing about which file
    (write() has no name): `exc` gets `path` as its filename (a file inside the temporary folder `tmp`:
    its name inside `path`); a full disk that a library reported in its own exception (safetensors'
    SafetensorError) is raised as that OSError, named, instead."""
    full = disk_full(exc) if isinstance(exc, Exception) else None
    if full is None:
        return
    if not full.filename:
        full.filename = str(path)
    elif tmp is not None and Path(full.filename).is_relative_to(tmp):
        full.filename = str(path / Path(full.filename).relative_to(tmp))
    if not _in_chain(exc, full):  # made from the message: the original carries no OSError to find
        raise full from exc


def _in_chain(exc: BaseException, member: BaseException) -> bool:
    seen, current = set(), exc
    while current is not None and id(current) not in seen:
        if current is member:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder `src` to `dst`, replacing an existing `dst` without a window where neither exists whole."""
    sys.audit("ducktune.replace_dir", str(src), str(dst))  # where the crash tests cut in
    if dst.exists() and _exchange(src, dst):
        _fsync_dir(dst.parent)
        shutil.rmtree(src, ignore_errors=True)  # now the previous folder
        return
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
    os.replace(src, dst)
    _fsync_dir(dst.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where that is unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without renameat2 (glibc < 2.28, musl < 1.2.5)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a filesystem or kernel without it
        return False
    raise OSError(code, os.strerror(code), str(b))


_LEFTOVER = re.compile(r"^\.(?P<target>.+)\.(?:(?P<pid>\d+)\.[^.]+\.tmp|old-(?P<old_pid>\d+))$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that dead writers of `path` left beside it; returns what was removed.

    A folder moved aside by a writer that died before moving the new one in is put back first.
    """
    path = Path(path)
    removed = []
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            match = _LEFTOVER.match(entry.name)
            if not match or match["target"] != path.name or _alive(int(match["pid"] or match["old_pid"])):
                continue
            if match["old_pid"] and not path.exists():
                os.replace(entry, path)  # the previous folder, whose replacement never arrived
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


# No space, over quota, or over the largest file the file system (FAT32: 4 GiB) or `ulimit -f` allows.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# Writers in Rust (safetensors) report the OS error in their message only: "... (os error 28)".
_OS_ERROR_IN_MESSAGE = re.compile(r"\(os error (\d+)\)")


def disk_full(exc: BaseException, where: str | os.PathLike | None = None) -> OSError | None:
    """The no-space error behind `exc` (itself, its cause or context), if there is one.

    Some writers report a full disk without errno (torch.save: "unexpected pos"); with `where`, a
    failure while the filesystem holding `where` has under 1 MiB left counts as a full disk too.
    """
    seen, current = set(), exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL:
            # Writers in Rust or C (safetensors, torch.save) name no file: then name the folder written to.
            return current if current.filename or where is None else \
                OSError(current.errno, current.strerror or os.strerror(current.errno), str(where))
        code = _OS_ERROR_IN_MESSAGE.search(str(current)) if not isinstance(current, OSError) else None
        if code and int(code[1]) in DISK_FULL:
            return OSError(int(code[1]), os.strerror(int(code[1])), *([str(where)] if where is not None else []))
        current = current.__cause__ or current.__context__
    if where is not None and isinstance(exc, Exception):
        with contextlib.suppress(OSError):
            if shutil.disk_usage(where).free < 1 << 20:
                return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))
    return None


def short_write_cause(exc: BaseException, path: str | os.PathLike) -> OSError | None:
    """numpy's tofile (the GGUF writer's) reports a short write as OSError("N requested and M written")
    without errno: the error that writing on at the end of `path` gives now (ENOSPC for a full disk,
    EFBIG over the file size limit), named `path`; None for any other error, or when writing works."""
    if not isinstance(exc, OSError) or exc.errno is not None or "requested and" not in str(exc):
        return None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return None
    try:
        for _ in range(64):  # a partial write first, then the error
            os.write(fd, bytes(1 << 16))
    except OSError as err:
        err.filename = err.filename or str(path)
        return err
    finally:
        os.close(fd)
    return None


def safetensors_header(path: Path) -> tuple[dict, str | None]:
    """A .safetensors file's header, and why the file is not whole (None: its size matches the header)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return {}, "truncated (no header)"
            (length,) = struct.unpack("<Q", head)
            if length > size - 8:
                return {}, "truncated (header cut short)"
            header = json.loads(handle.read(length).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}, "unreadable header"
    if not isinstance(header, dict):
        return {}, "unreadable header"
    offsets = [entry.get("data_offsets") for key, entry in header.items() if key != "__metadata__" and isinstance(entry, dict)]
    ends = [pair[1] for pair in offsets if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], int)]
    expected = 8 + length + max(ends, default=0)
    if size < expected:
        return header, f"truncated ({size} of {expected} bytes)"
    return header, None


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is not whole (None: it is as long as its header says)."""
    return safetensors_header(path)[1]
