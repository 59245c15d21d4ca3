"""Behaviour of the output-commit helper pinned closely enough that mutmut's variants of it fail.

Real files in tmp_path, real processes for the pids; what is asserted is what a user sees: which
file is committed, what is left beside it, and the message text.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from disk_helpers import mounted, tmpfs

from lrnnet import _io
from lrnnet._io import (
    OutputCheckFailed,
    OutputSet,
    atomic_output,
    check_writable,
    clean_stale_temps,
    command_outputs,
    file_sha256,
    is_temp_name,
    keep_outputs,
    refuse_overwrite,
    target_of,
    temp_path_for,
    verify_for,
    verify_video,
    write_bytes_atomic,
    write_json_atomic,
)
from lrnnet.errors import InputError


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@contextlib.contextmanager
def _live_pid():
    """A live process that is not this one: a sleeping child, so a mutant that signals it harms nothing else."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc.pid
        assert proc.poll() is None, "probing whether a process is alive must not signal it"
    finally:
        proc.kill()
        proc.wait()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if is_temp_name(p.name))


# -- file_sha256 ---------------------------------------------------------------------------------------


def test_file_sha256_of_a_large_file_is_the_digest_of_all_its_bytes(tmp_path):
    data = os.urandom((1 << 20) * 2 + 12345)  # more than two 1 MiB blocks
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path)) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert file_sha256(empty) == hashlib.sha256(b"").hexdigest()


# -- names -----------------------------------------------------------------------------------------------


def test_temp_name_layout_pid_and_random_part(tmp_path):
    target = tmp_path / "out.mp4"
    a, b = temp_path_for(target), temp_path_for(target)
    assert a.parent == tmp_path
    assert a.name.startswith(f".out.mp4.lrnnet-tmp-{os.getpid()}-")
    assert a.suffix == ".mp4"
    random_part = a.name[len(f".out.mp4.lrnnet-tmp-{os.getpid()}-"):-len(".mp4")]
    assert len(random_part) == 8 and all(c in "0123456789abcdef" for c in random_part)
    assert a != b
    assert _io.TEMP_MARK == ".lrnnet-tmp-"
    assert is_temp_name(a.name) and not is_temp_name("out.mp4")


def test_stale_temps_removed_only_for_dead_pids_and_only_of_that_target(tmp_path):
    target = tmp_path / "a.json"
    dead = _dead_pid()
    stale_file = tmp_path / f".a.json.lrnnet-tmp-{dead}-0000abcd.json"
    stale_file.write_text("{}")
    stale_dir = tmp_path / f".a.json.lrnnet-tmp-{dead}-0000abce.json"
    stale_dir.mkdir()
    (stale_dir / "inner.png").write_bytes(b"x")
    live = tmp_path / f".a.json.lrnnet-tmp-{os.getpid()}-0000abcd.json"
    live.write_text("{}")
    not_a_pid = tmp_path / ".a.json.lrnnet-tmp-xyz-0000abcd.json"
    not_a_pid.write_text("{}")
    other_target = tmp_path / f".b.json.lrnnet-tmp-{dead}-0000abcd.json"
    other_target.write_text("{}")
    with _live_pid() as other:
        init = tmp_path / f".a.json.lrnnet-tmp-{other}-0000abcd.json"  # a live process, not ours: kept
        init.write_text("{}")
        removed = clean_stale_temps(target)
        assert sorted(removed) == sorted([stale_file, stale_dir])
        assert not stale_file.exists() and not stale_dir.exists()
        assert live.exists() and not_a_pid.exists() and other_target.exists() and init.exists()
        assert clean_stale_temps(tmp_path / "missing" / "a.json") == []
        assert clean_stale_temps(str(target)) == []


def test_stale_temps_of_a_target_with_glob_characters(tmp_path):
    target = tmp_path / "run[1]*?.json"
    dead = _dead_pid()
    stale = tmp_path / f".run[1]*?.json.lrnnet-tmp-{dead}-00000000.json"
    stale.write_text("{}")
    lookalike = tmp_path / f".run1x.json.lrnnet-tmp-{dead}-00000000.json"
    lookalike.write_text("{}")
    assert clean_stale_temps(target) == [stale]
    assert lookalike.exists()
    assert _io.glob_escape("a*b?c[d]") == "a[*]b[?]c[[]d]"


def test_a_stale_symlink_is_removed_not_its_target(tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "f").write_text("x")
    dead = _dead_pid()
    link = tmp_path / f".a.json.lrnnet-tmp-{dead}-00000000.json"
    link.symlink_to(keep)
    assert clean_stale_temps(tmp_path / "a.json") == [link]
    assert not link.is_symlink() and (keep / "f").read_text() == "x"


# -- preflight -------------------------------------------------------------------------------------------


def test_check_writable_accepts_and_leaves_nothing(tmp_path):
    check_writable(None)
    check_writable(tmp_path / "new.json")
    check_writable(tmp_path / "folder", directory=True)
    (tmp_path / "existing").mkdir()
    check_writable(tmp_path / "existing", directory=True)
    (tmp_path / "old.json").write_text("{}")
    check_writable(str(tmp_path / "old.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "old.json"]
    assert (tmp_path / "old.json").read_text() == "{}"


def test_check_writable_messages_name_what(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError) as info:
        check_writable(tmp_path / "d", what="report")
    assert str(info.value) == f"report {tmp_path / 'd'} is a directory; give a file name such as {tmp_path / 'd' / '<name>'}"
    with pytest.raises(InputError) as info:
        check_writable(tmp_path / "f", directory=True, what="labels")
    assert str(info.value) == f"labels {tmp_path / 'f'} exists and is not a folder"
    with pytest.raises(InputError) as info:
        check_writable(tmp_path / "f" / "x.json", what="report")
    assert str(info.value) == f"report {tmp_path / 'f' / 'x.json'}: {tmp_path / 'f'} is not a folder"
    with pytest.raises(InputError) as info:
        check_writable(tmp_path / "no" / "x.json")
    assert str(info.value) == f"output {tmp_path / 'no' / 'x.json'}: folder {tmp_path / 'no'} does not exist; create it first"
    with pytest.raises(InputError) as info:
        check_writable(tmp_path / "..")
    assert str(info.value).startswith("output ") and str(info.value).endswith(" is not a file name")
    with pytest.raises(InputError, match=r"^output /dev/null is not a regular file; give a file name$"):
        check_writable("/dev/null")


def test_check_writable_make_parents_walks_up_to_the_nearest_folder(tmp_path):
    check_writable(tmp_path / "a" / "b" / "c.json", make_parents=True)
    assert list(tmp_path.iterdir()) == []  # nothing made by a preflight
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        check_writable(tmp_path / "file" / "b" / "c.json", make_parents=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_check_writable_in_a_read_only_nearest_parent(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(InputError) as info:
            check_writable(ro / "sub" / "x.json", make_parents=True, what="report")
        assert str(info.value).startswith(f"cannot write report {ro / 'sub' / 'x.json'}: permission denied")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_check_writable_records_the_path_only_inside_a_scope(tmp_path):
    target = tmp_path / "x.json"
    with command_outputs():
        check_writable(str(target))
        assert _io.watched_outputs()[0] == target
    check_writable(target)
    assert target not in [p for s in _io._SCOPES for p in s.watched]


def test_preflight_refuses_a_folder_output_that_is_an_input_and_checks_folders(tmp_path):
    src = tmp_path / "images"
    src.mkdir()
    with pytest.raises(InputError, match="is the input"):
        _io.preflight(inputs=[src], folders=[src])
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="exists and is not a folder"):
        _io.preflight(inputs=[src], folders=[tmp_path / "f"])
    with pytest.raises(InputError, match="is a directory"):
        _io.preflight(inputs=[], outputs=[src])
    _io.preflight(inputs=[None], outputs=[None, tmp_path / "o.json"], folders=[None, tmp_path / "new"])


def test_refuse_overwrite_messages_in_full(tmp_path):
    a = tmp_path / "a.onnx"
    a.write_text("x")
    with pytest.raises(InputError) as info:
        refuse_overwrite([a], [a])
    assert str(info.value) == f"output {a} is the input {a}; refusing to overwrite an input (give another output name)"
    b = tmp_path / "b.json"
    with pytest.raises(InputError) as info:
        refuse_overwrite([], [tmp_path / "c.json", b, tmp_path / "." / "b.json"])
    assert str(info.value) == f"outputs {b} and {tmp_path / '.' / 'b.json'} are the same file; give different names"
    refuse_overwrite([None, a], [None, b, tmp_path / "c.json"])


def test_refuse_overwrite_sees_hard_links_and_symlinks(tmp_path):
    a = tmp_path / "a.onnx"
    a.write_text("x")
    hard = tmp_path / "hard.onnx"
    os.link(a, hard)
    soft = tmp_path / "soft.onnx"
    soft.symlink_to(a)
    with pytest.raises(InputError, match="is the input"):
        refuse_overwrite([a], [hard])
    with pytest.raises(InputError, match="is the input"):
        refuse_overwrite([a], [soft])
    dangling = tmp_path / "dangling.onnx"
    dangling.symlink_to(tmp_path / "nowhere.onnx")
    with pytest.raises(InputError, match="are the same file"):
        refuse_overwrite([], [dangling, tmp_path / "nowhere.onnx"])
    other = tmp_path / "other.onnx"
    other.write_text("x")
    refuse_overwrite([a], [other])


# -- verifiers -------------------------------------------------------------------------------------------


def test_verifier_messages(tmp_path):
    bad_json = tmp_path / "r.json"
    bad_json.write_text("{")
    with pytest.raises(OutputCheckFailed, match=r"^JSON does not parse back \("):
        _io.verify_json(bad_json)
    bad_json.write_bytes(b"\xff\xfe")
    with pytest.raises(OutputCheckFailed, match="JSON does not parse back"):
        _io.verify_json(bad_json)
    empty = tmp_path / "e.engine"
    empty.write_bytes(b"")
    with pytest.raises(OutputCheckFailed, match=r"^the file is empty$"):
        _io.verify_nonempty(empty)
    (tmp_path / "one.engine").write_bytes(b"x")
    _io.verify_nonempty(tmp_path / "one.engine")
    png = tmp_path / "i.png"
    png.write_bytes(b"not a png")
    with pytest.raises(OutputCheckFailed, match=r"^image i\.png does not decode$"):
        _io.verify_image(png)
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"\x0a\xff\xff\xff")
    with pytest.raises(OutputCheckFailed, match=r"^ONNX does not parse back \(\w+\)$"):
        _io.verify_onnx(onnx_file)
    zip_file = tmp_path / "c.pth"
    zip_file.write_bytes(b"not a zip")
    with pytest.raises(OutputCheckFailed, match=r"^archive does not reopen \("):
        _io.verify_zip(zip_file)
    with pytest.raises(OutputCheckFailed, match=r"^nothing was written$"):
        _io._verify_exists(tmp_path / "missing.bin")
    _io._verify_exists(png)


def test_a_one_pixel_image_and_a_16_bit_image_verify(tmp_path):
    small = tmp_path / "one.png"
    cv2.imwrite(str(small), np.zeros((1, 1), np.uint8))
    _io.verify_image(small)
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), np.full((3, 3), 60000, np.uint16))
    _io.verify_image(deep)  # read unchanged


def test_verify_for_every_suffix(tmp_path):
    assert verify_for(tmp_path) is _io.verify_folder
    assert verify_for(tmp_path / "a.JSON") is _io.verify_json
    for name in ("a.png", "a.jpg", "a.JPEG"):
        assert verify_for(tmp_path / name) is _io.verify_image
    for name in ("a.mp4", "a.m4v", "a.mov", "a.avi", "a.MKV"):
        assert verify_for(tmp_path / name) is _io.verify_video
    assert verify_for(tmp_path / "a.onnx") is _io.verify_onnx
    assert verify_for(tmp_path / "a.pth") is _io.verify_zip
    assert verify_for(tmp_path / "a.pt") is _io.verify_zip
    assert verify_for(tmp_path / "a.engine") is _io.verify_nonempty
    assert verify_for(tmp_path / "a.txt") is _io._verify_exists
    assert verify_for(tmp_path / "a") is _io._verify_exists


def _video(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(frames):
        writer.write(np.full((24, 32, 3), i * 20, np.uint8))
    writer.release()


def test_video_counts_and_messages(tmp_path):
    video = tmp_path / "v.avi"
    _video(video, 3)
    assert _io.count_video_frames(video) == 3
    assert _io._count_frames_opencv(video) == 3
    verify_video(video, frames=3)
    verify_video(video, frames=lambda: 3)
    verify_video(video)
    with pytest.raises(OutputCheckFailed, match=r"^video reopens with 3 frames, 4 were written$"):
        verify_video(video, frames=4)
    with pytest.raises(OutputCheckFailed, match=r"^video reopens with 3 frames, 2 were written$"):
        verify_video(video, frames=lambda: 2)
    broken = tmp_path / "b.avi"
    broken.write_bytes(b"garbage" * 100)
    with pytest.raises(OutputCheckFailed, match="video does not reopen"):
        verify_video(broken, frames=1)
    with pytest.raises(OutputCheckFailed, match=r"^video does not reopen$"):
        _io._count_frames_opencv(broken)


def test_folder_verifier_counts_files_only_and_checks_each(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    (folder / "a.json").write_text("{}")
    (folder / "sub").mkdir()
    _io.verify_folder(folder, files=1)
    _io.verify_folder(folder, files=lambda: 1)
    _io.verify_folder(folder)
    with pytest.raises(OutputCheckFailed, match=r"^folder holds 1 files, 2 were written$"):
        _io.verify_folder(folder, files=2)
    with pytest.raises(OutputCheckFailed, match=r"^folder holds 1 files, 0 were written$"):
        _io.verify_folder(folder, files=lambda: 0)
    (folder / "b.json").write_text("{")
    with pytest.raises(OutputCheckFailed, match="JSON does not parse back"):
        _io.verify_folder(folder)


def test_zip_verifier_accepts_a_good_archive(tmp_path):
    path = tmp_path / "c.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.pkl", b"x" * 100)
    _io.verify_zip(path)


# -- durability and messages -----------------------------------------------------------------------------


def test_default_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_json_atomic(tmp_path / "r.json", {"a": 1})
        with atomic_output(tmp_path / "d", directory=True) as tmp:
            (tmp / "x.json").write_text("{}")
        assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o640
        assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o750
        assert os.umask(0o027) == 0o027  # the umask itself is left as it was
    finally:
        os.umask(old)


def test_fsync_helpers_on_files_folders_and_missing_folders(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a").write_text("x")
    (folder / "sub").mkdir()
    _io._fsync_path(folder)
    _io._fsync_path(folder / "a")
    _io._fsync_dir(tmp_path / "missing")  # no error: nothing to sync
    with pytest.raises(FileNotFoundError):
        _io._fsync_file(tmp_path / "missing")


def test_free_bytes_of_a_missing_file_is_its_folders(tmp_path):
    stats = os.statvfs(tmp_path)
    free = _io.free_bytes(tmp_path / "not-yet.json")
    assert free is not None and abs(free - stats.f_bavail * stats.f_frsize) < 64 << 20
    assert _io.free_bytes(tmp_path / "no" / "such" / "x") is None


def test_describe_os_error_without_a_file_name_or_strerror():
    import errno as e

    assert _io.describe_os_error(OSError(e.ENOSPC, "No space")) == "the disk is full; free some space or write elsewhere"
    assert _io.describe_os_error(OSError(e.EDQUOT, "q")) == "the disk quota is exceeded; free some space or write elsewhere"
    assert _io.describe_os_error(OSError(e.EFBIG, "big", "/x/.a.bin.lrnnet-tmp-1-ab.bin")) == (
        "the file is too large for this file system; write elsewhere (/x/a.bin)")
    assert _io.describe_os_error(OSError("plain words")) == "plain words"
    assert _io.describe_os_error(OSError(e.EIO, "Input/output error")) == "Input/output error"


def test_target_of_only_a_dotted_temporary_part():
    assert target_of("/r/.out.lrnnet-tmp-12-ab/.x.png.lrnnet-tmp-3-cd.png") == _io.Path("/r/out/.x.png.lrnnet-tmp-3-cd.png")
    assert target_of("/r/out.lrnnet-tmp-12-ab") == _io.Path("/r/out.lrnnet-tmp-12-ab")
    assert target_of("/r/.d.lrnnet-tmp-1-ab/f.png") == _io.Path("/r/d/f.png")


def test_a_check_failure_on_a_full_disk_is_input_error_else_names_the_target(tmp_path):
    target = tmp_path / "r.json"
    with pytest.raises(OutputCheckFailed) as info, atomic_output(target) as tmp:
        tmp.write_text("{")
    assert str(info.value).startswith(f"{target} was written but reads back wrong: JSON does not parse back")
    assert isinstance(info.value.__cause__, OutputCheckFailed)
    assert not target.exists() and _leftovers(tmp_path) == []


def test_a_low_space_threshold_of_one_mebibyte():
    assert _io._LOW_SPACE_BYTES == 1024 * 1024


# -- commit and roll back --------------------------------------------------------------------------------


def test_atomic_output_refusals_in_full(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError) as info, atomic_output(tmp_path / "d"):
        pass
    assert str(info.value) == f"output {tmp_path / 'd'} is a directory; give a file name"
    with pytest.raises(InputError) as info, atomic_output(tmp_path / "f", directory=True):
        pass
    assert str(info.value) == f"output {tmp_path / 'f'} exists and is not a folder"
    with pytest.raises(OutputCheckFailed) as info, atomic_output(tmp_path / "n.json"):
        pass
    assert str(info.value) == f"nothing was written to {tmp_path / 'n.json'}"
    with pytest.raises(InputError) as info:
        OutputSet().add(tmp_path / "d")
    assert str(info.value) == f"output {tmp_path / 'd'} is a directory; give a file name"
    assert _leftovers(tmp_path) == []


def test_atomic_output_makes_parents_and_a_rollback_removes_them(tmp_path):
    target = tmp_path / "runs" / "a" / "r.json"
    with pytest.raises(RuntimeError), command_outputs():
        write_json_atomic(target, {"x": 1})
        assert json.loads(target.read_text()) == {"x": 1}
        raise RuntimeError("later failure")
    assert not (tmp_path / "runs").exists()
    write_json_atomic(target, {"x": 2})  # outside a scope: kept
    assert json.loads(target.read_text()) == {"x": 2}


def test_a_rollback_keeps_a_made_folder_that_holds_something_else(tmp_path):
    target = tmp_path / "runs" / "r.json"
    with pytest.raises(RuntimeError), command_outputs():
        write_json_atomic(target, {"x": 1})
        (tmp_path / "runs" / "notes.txt").write_text("mine")
        raise RuntimeError
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["notes.txt"]


def test_a_resumable_scope_keeps_each_output_and_its_folders(tmp_path):
    target = tmp_path / "runs" / "ckpt.json"
    target.parent.mkdir()
    target.write_text('{"old": 1}')
    with pytest.raises(RuntimeError), command_outputs(rollback=False):
        write_json_atomic(target, {"new": 1})
        write_json_atomic(tmp_path / "made" / "b.json", {"b": 1})
        assert target in _io.watched_outputs()
        raise RuntimeError
    assert json.loads(target.read_text()) == {"new": 1}
    assert json.loads((tmp_path / "made" / "b.json").read_text()) == {"b": 1}
    assert _leftovers(target.parent) == [] and _leftovers(tmp_path) == []
    assert target in _io.watched_outputs()  # the failed command's outputs, for naming a full disk


def test_the_last_failed_outputs_are_forgotten_by_the_next_command(tmp_path):
    with pytest.raises(RuntimeError), command_outputs():
        check_writable(tmp_path / "a.json")
        raise RuntimeError
    assert _io.watched_outputs() == [tmp_path / "a.json"]
    with command_outputs():
        assert _io.watched_outputs() == []
        with command_outputs():  # a nested scope does not forget the outer's
            check_writable(tmp_path / "b.json")
        assert _io.watched_outputs() == [tmp_path / "b.json"]
    assert _io.watched_outputs() == []


def test_rollback_restores_old_content_of_every_output_in_reverse(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"a": "old"}')
    with pytest.raises(KeyboardInterrupt), command_outputs():
        write_json_atomic(a, {"a": "new"})
        write_json_atomic(b, {"b": "new"})
        write_json_atomic(a, {"a": "newer"})
        raise KeyboardInterrupt
    assert json.loads(a.read_text()) == {"a": "old"}
    assert not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_nested_scope_commits_roll_back_with_the_outer_and_success_leaves_no_backup(tmp_path):
    a = tmp_path / "a.json"
    a.write_text('{"v": 0}')
    with pytest.raises(RuntimeError), command_outputs():
        with command_outputs():
            write_json_atomic(a, {"v": 1})
            write_json_atomic(tmp_path / "new" / "n.json", {})
        assert json.loads(a.read_text()) == {"v": 1}
        raise RuntimeError
    assert json.loads(a.read_text()) == {"v": 0}
    assert not (tmp_path / "new").exists()
    with command_outputs(), command_outputs():
        write_json_atomic(a, {"v": 2})
    assert json.loads(a.read_text()) == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_an_inner_scope_under_a_resumable_outer_is_final_and_leaves_no_backup(tmp_path):
    a = tmp_path / "a.json"
    a.write_text('{"v": 0}')
    with pytest.raises(RuntimeError), command_outputs(rollback=False):
        with command_outputs():
            write_json_atomic(a, {"v": 1})
        raise RuntimeError
    assert json.loads(a.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_keep_outputs_in_every_scope_and_no_backup_left(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"v": 0}')
    b.write_text('{"v": 0}')
    with pytest.raises(RuntimeError), command_outputs():
        write_json_atomic(a, {"v": 1})
        write_json_atomic(tmp_path / "made" / "m.json", {})
        with command_outputs():
            write_json_atomic(b, {"v": 1})
            keep_outputs()
        raise RuntimeError
    assert json.loads(a.read_text()) == {"v": 1}
    assert json.loads(b.read_text()) == {"v": 1}
    assert (tmp_path / "made" / "m.json").exists()
    assert _leftovers(tmp_path) == []


def _old_output_folder(target):
    """A folder output an earlier run of lrnnet committed (it holds the marker), with one file."""
    target.mkdir()
    (target / "old.json").write_text("{}")
    (target / _io.OUTPUT_MARKER).write_text("")
    return target


def _files(folder):
    """The output's own files: the marker every committed folder holds left out."""
    return sorted(p.name for p in folder.iterdir() if p.name != _io.OUTPUT_MARKER)


def test_folder_output_replaces_the_old_folder_in_and_out_of_a_scope(tmp_path):
    target = _old_output_folder(tmp_path / "pred")
    with atomic_output(target, directory=True) as tmp:
        assert tmp.is_dir() and list(tmp.iterdir()) == []
        (tmp / "new.json").write_text("{}")
    assert _files(target) == ["new.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]
    with pytest.raises(RuntimeError), command_outputs():
        with atomic_output(target, directory=True) as tmp:
            (tmp / "newer.json").write_text("{}")
        assert _files(target) == ["newer.json"]
        raise RuntimeError
    assert _files(target) == ["new.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]
    with command_outputs(), atomic_output(target, directory=True) as tmp:
        (tmp / "third.json").write_text("{}")
    assert _files(target) == ["third.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]


def test_a_file_replaced_by_a_scope_is_restored_with_its_inode_content(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(b"old")
    hard = tmp_path / "other-name.bin"
    os.link(a, hard)
    with pytest.raises(RuntimeError), command_outputs():
        write_bytes_atomic(a, b"new")
        assert a.read_bytes() == b"new" and hard.read_bytes() == b"old"
        raise RuntimeError
    assert a.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "other-name.bin"]


def test_a_symlink_target_is_replaced_and_restored(tmp_path):
    real = tmp_path / "real.json"
    real.write_text('{"r": 1}')
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with pytest.raises(RuntimeError), command_outputs():
        write_json_atomic(link, {"l": 1})
        assert not link.is_symlink()
        raise RuntimeError
    assert link.is_symlink() and json.loads(link.read_text()) == {"r": 1}
    dangling = tmp_path / "d.json"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(RuntimeError), command_outputs():
        write_json_atomic(dangling, {"d": 1})
        raise RuntimeError
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()


def test_rename_failure_restores_the_backup(tmp_path):
    target = _old_output_folder(tmp_path / "pred")
    with pytest.raises(OSError), atomic_output(target, directory=True) as tmp:
        (tmp / "x.json").write_text("{}")
        tmp.chmod(0o755)
        # the temporary is replaced by a file: renaming a file onto the folder fails with EISDIR
        for child in tmp.iterdir():
            child.unlink()
        tmp.rmdir()
        tmp.write_text("{}")
    assert _files(target) == ["old.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]


def test_output_set_refuses_a_missing_write_and_commits_nothing(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"a": 0}')
    with pytest.raises(OutputCheckFailed) as info, OutputSet() as out:
        ta = out.add(a)
        out.add(b)
        ta.write_text('{"a": 1}')
    assert str(info.value) == f"nothing was written to {b}"
    assert json.loads(a.read_text()) == {"a": 0} and not b.exists()
    assert _leftovers(tmp_path) == []


def test_output_set_folder_and_verify_and_default_mode(tmp_path):
    old = os.umask(0o022)
    try:
        with OutputSet() as out:
            folder = out.add(tmp_path / "made" / "dir", directory=True)
            assert folder.is_dir()
            (folder / "x.json").write_text("{}")
            f = out.add(tmp_path / "r.bin", verify=_io.verify_nonempty)
            f.write_bytes(b"x")
        assert stat.S_IMODE((tmp_path / "r.bin").stat().st_mode) == 0o644
        assert stat.S_IMODE((tmp_path / "made" / "dir").stat().st_mode) == 0o755
        assert (tmp_path / "made" / "dir" / "x.json").exists()
        with pytest.raises(OutputCheckFailed, match="the file is empty"), OutputSet() as out:
            out.add(tmp_path / "r.bin", verify=_io.verify_nonempty).write_bytes(b"")
        assert (tmp_path / "r.bin").read_bytes() == b"x"
    finally:
        os.umask(old)
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "made") == []


def test_output_set_cleans_stale_temps_and_removes_its_own_on_failure(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".a.json.lrnnet-tmp-{dead}-00000000.json"
    stale.write_text("{}")
    with pytest.raises(RuntimeError), OutputSet() as out:
        out.add(tmp_path / "a.json").write_text("{}")
        out.add(tmp_path / "d", directory=True)
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_output_set_inside_a_scope_rolls_back_with_it(tmp_path):
    a = tmp_path / "a.json"
    a.write_text('{"a": 0}')
    with pytest.raises(RuntimeError), command_outputs():
        with OutputSet() as out:
            out.add(a).write_text('{"a": 1}')
        assert json.loads(a.read_text()) == {"a": 1}
        raise RuntimeError
    assert json.loads(a.read_text()) == {"a": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_atomic_output_cleans_stale_temps_and_watches_its_target(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".a.json.lrnnet-tmp-{dead}-00000000.json"
    stale.write_text("{}")
    with command_outputs():
        write_json_atomic(tmp_path / "a.json", [1])
        assert tmp_path / "a.json" in _io._SCOPES[-1].watched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_a_temporary_symlink_left_in_the_block_is_removed(tmp_path):
    target = tmp_path / "a.json"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.symlink_to(tmp_path / "nowhere")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_write_bytes_and_json_text(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "r.json").read_text() == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}\n'
    write_bytes_atomic(str(tmp_path / "x.bin"), b"\x00\x01")
    assert (tmp_path / "x.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(OutputCheckFailed, match="the file is empty"):
        write_bytes_atomic(tmp_path / "e.engine", b"", verify=_io.verify_nonempty)
    assert not (tmp_path / "e.engine").exists()


def test_write_image_encodes_png_by_default_and_the_suffix(tmp_path):
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    _io.write_image(str(tmp_path / "a.png"), image)
    assert np.array_equal(cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED), image)
    _io.write_image(tmp_path / "noext", image)
    assert (tmp_path / "noext").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _io.write_image(tmp_path / "a.jpg", np.zeros((8, 8, 3), np.uint8))
    assert (tmp_path / "a.jpg").read_bytes()[:2] == b"\xff\xd8"
    with pytest.raises(OSError) as info:
        _io.write_image(tmp_path / "missing" / "a.png", image)
    assert info.value.filename == str(tmp_path / "missing" / "a.png")
    assert info.value.errno == 2 and info.value.strerror


# -- a real full (512 KiB) and a real read-only disk: tmpfs, skipped where mount is refused -------------


@pytest.fixture
def small_disk(tmp_path):
    with tmpfs(tmp_path / "disk", "512k") as disk:
        yield disk


def test_a_check_failure_on_a_full_disk_is_input_error_naming_the_target(small_disk):
    target = small_disk / "r.json"
    target.write_text('{"old": 1}')
    with pytest.raises(InputError) as info, atomic_output(target) as tmp:
        tmp.write_text("{")
    message = str(info.value)
    assert message.startswith(f"cannot write {target}: the disk is full (")
    assert message.endswith(" KiB free); free some space or write elsewhere")
    free_kib = int(message.split("(")[1].split(" KiB")[0])
    assert 0 < free_kib < 1024
    assert isinstance(info.value.__cause__, OutputCheckFailed)
    assert json.loads(target.read_text()) == {"old": 1}
    assert sorted(p.name for p in small_disk.iterdir()) == ["r.json"]


def test_free_bytes_of_a_small_disk(small_disk):
    free = _io.free_bytes(small_disk / "x")
    assert free is not None and 0 < free <= 512 * 1024


def test_check_writable_on_a_read_only_disk(small_disk):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(InputError) as info:
        check_writable(small_disk / "out.json", what="report")
    # The output is named once (describe_os_error's own "(path)" would repeat it)
    assert str(info.value) == f"cannot write report {small_disk / 'out.json'}: the file system is read-only; write elsewhere"
    with pytest.raises(InputError, match="read-only"):
        check_writable(small_disk / "new" / "out.json", make_parents=True)


def test_a_write_that_fills_the_disk_names_the_output_not_its_temporary(small_disk):
    target = small_disk / "big.bin"
    with pytest.raises(OSError) as info:
        write_bytes_atomic(target, b"x" * (1 << 20))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert info.value.strerror
    assert list(small_disk.iterdir()) == []
    image = np.random.default_rng(0).integers(0, 255, (1024, 1024), dtype=np.uint8)  # ~1 MiB as PNG
    with pytest.raises(OSError) as info:
        _io.write_image(small_disk / "big.png", image)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(small_disk / "big.png")


def test_an_onnx_file_with_external_data_verifies_without_reading_the_data(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("float_data")
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "weights-not-here.bin"
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [weight])
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    _io.verify_onnx(path)
    with pytest.raises(Exception):  # noqa: B017 - what verify_onnx avoids: loading the data
        onnx.load(str(path))


def test_video_errors_name_the_exception(tmp_path):
    broken = tmp_path / "b.mp4"
    broken.write_bytes(b"garbage" * 100)
    with pytest.raises(OutputCheckFailed, match=r"^video does not reopen \(\w+: .+\)$"):
        _io.count_video_frames(broken)
    with pytest.raises(OutputCheckFailed, match=r"^the file is empty$"):
        (tmp_path / "e.mp4").write_bytes(b"")
        verify_video(tmp_path / "e.mp4", frames=0)


def test_a_video_file_without_a_video_stream_has_no_frames(tmp_path):
    import av

    path = tmp_path / "sound.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    assert _io.count_video_frames(path) == 0
    with pytest.raises(OutputCheckFailed, match=r"^video has no frames$"):
        verify_video(path)
    with pytest.raises(OutputCheckFailed, match=r"^video reopens with 0 frames, 1 were written$"):
        verify_video(path, frames=1)


def test_pyav_counts_every_frame_of_a_longer_video(tmp_path):
    video = tmp_path / "v.mkv"
    _video(video, 7)
    assert _io.count_video_frames(video) == 7
    verify_video(video, frames=7)


def test_a_stale_temp_of_a_target_whose_suffix_has_a_dash(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".a.my-ext.lrnnet-tmp-{dead}-0000abcd.my-ext"
    stale.write_text("x")
    assert clean_stale_temps(tmp_path / "a.my-ext") == [stale]


def test_free_bytes_of_a_mount_point_is_its_own_disk(small_disk):
    free = _io.free_bytes(small_disk)
    assert free is not None and 0 < free <= 512 * 1024


def test_the_full_disk_message_gives_the_free_kib_seen_at_the_check(small_disk):
    seen = {}

    def verify(tmp):
        seen["free"] = _io.free_bytes(tmp)
        raise OutputCheckFailed("truncated")

    with pytest.raises(InputError) as info, atomic_output(small_disk / "x.bin", verify=verify) as tmp:
        tmp.write_bytes(b"x" * 5000)
    assert f"the disk is full ({seen['free'] // 1024} KiB free)" in str(info.value)


def test_a_folder_output_is_checked_file_by_file_before_it_commits(tmp_path):
    target = tmp_path / "labels"
    with pytest.raises(OutputCheckFailed, match="JSON does not parse back"), \
            atomic_output(target, directory=True) as tmp:
        (tmp / "good.json").write_text("{}")
        (tmp / "bad.json").write_text("{")
    assert list(tmp_path.iterdir()) == []


def test_a_rollback_never_removes_a_folder_that_was_there(tmp_path):
    base = tmp_path / "empty-before"
    base.mkdir()
    with pytest.raises(RuntimeError), command_outputs():
        write_json_atomic(base / "new" / "deeper" / "r.json", {})
        raise RuntimeError
    assert base.is_dir() and list(base.iterdir()) == []


def test_target_of_a_name_holding_the_mark_twice():
    assert target_of("/r/.a.lrnnet-tmp-1-aa.lrnnet-tmp-2-bb") == _io.Path("/r/a")


def test_pyav_counts_only_the_video_stream_of_a_file_with_sound(tmp_path):
    import av

    path = tmp_path / "both.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("mjpeg", rate=10)
        video.width, video.height, video.pix_fmt = 32, 24, "yuvj420p"
        audio = container.add_stream("pcm_s16le", rate=8000)
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), i * 40, np.uint8), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 400), np.int16), format="s16", layout="mono")
            sound.sample_rate = 8000
            for packet in audio.encode(sound):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    assert _io.count_video_frames(path) == 4
    verify_video(path, frames=4)


def test_parse_failures_name_the_library_exception(tmp_path):
    broken = tmp_path / "b.mp4"
    broken.write_bytes(b"garbage" * 100)
    with pytest.raises(OutputCheckFailed) as info:
        _io.count_video_frames(broken)
    assert f"({type(info.value.__cause__).__name__}: " in str(info.value)
    assert "NoneType" not in str(info.value)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x0a\xff\xff\xff")
    with pytest.raises(OutputCheckFailed) as info:
        _io.verify_onnx(model)
    assert str(info.value) == f"ONNX does not parse back ({type(info.value.__cause__).__name__})"
    assert "NoneType" not in str(info.value)


def test_exactly_one_mebibyte_free_is_not_a_full_disk(tmp_path):
    with tmpfs(tmp_path / "disk", "1028k") as disk:
        seen = {}

        def verify(tmp):
            seen["free"] = _io.free_bytes(tmp)
            raise OutputCheckFailed("truncated")

        with pytest.raises(OutputCheckFailed) as info, atomic_output(disk / "x.bin", verify=verify) as tmp:
            tmp.write_bytes(b"x")  # one 4 KiB page of the 1028 KiB
        assert seen["free"] == 1 << 20
        assert str(info.value) == f"{disk / 'x.bin'} was written but reads back wrong: truncated"


# -- a rename or a rollback step that really fails: a mount point cannot be renamed (EBUSY) -------------


def _mounted_over(path, source=None):
    """Mount a tmpfs over the folder `path`, or bind the file `source` over the file `path`; skip where refused."""
    return mounted(["--bind", str(source)] if source else ["-t", "tmpfs", "-o", "size=64k", "tmpfs"], path)


@pytest.mark.parametrize("in_scope", [True, False])
def test_a_folder_whose_final_rename_fails_is_restored_from_its_backup(tmp_path, in_scope):
    target = _old_output_folder(tmp_path / "pred")
    mounted = []
    with pytest.raises(OSError) as info, command_outputs() if in_scope else contextlib.nullcontext(), \
            contextlib.ExitStack() as mounts, atomic_output(target, directory=True) as tmp:
        mounted.append(mounts.enter_context(_mounted_over(tmp)))
        (tmp / "new.json").write_text("{}")
    assert info.value.errno == errno.EBUSY  # the rename of the temporary (a mount point) onto the target
    assert _files(target) == ["old.json"]
    mounted[0].rmdir()  # the temporary could not be removed while mounted; nothing else is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]


def test_a_file_whose_final_rename_fails_keeps_its_content_and_leaves_no_backup(tmp_path):
    target, source = tmp_path / "a.json", tmp_path / "source.json"
    target.write_text('{"a": 0}')
    source.write_text('{"a": 1}')
    mounted = []
    with pytest.raises(OSError) as info, command_outputs(), contextlib.ExitStack() as mounts, \
            atomic_output(target) as tmp:
        tmp.write_text('{"a": 1}')
        mounted.append(mounts.enter_context(_mounted_over(tmp, source)))
    assert info.value.errno == errno.EBUSY
    assert json.loads(target.read_text()) == {"a": 0} and target.stat().st_nlink == 1  # the backup link is gone
    mounted[0].unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "source.json"]


def test_a_failing_rollback_step_neither_stops_the_others_nor_hides_the_error(tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text('{"v": 0}')
    second.write_text('{"v": 0}')
    with pytest.raises(RuntimeError, match="^the command failed$"), command_outputs():
        write_json_atomic(first, {"v": 1})
        write_json_atomic(second, {"v": 1})
        (backup,) = [p for p in tmp_path.iterdir() if p.name.startswith(".second.json")]
        backup.unlink()  # restoring `second` (rolled back first) fails: FileNotFoundError
        raise RuntimeError("the command failed")
    assert json.loads(first.read_text()) == {"v": 0}  # still rolled back after the failed step
    assert not second.exists() and _leftovers(tmp_path) == []


def test_output_set_refuses_a_folder_output_over_a_file_like_atomic_output(tmp_path):
    target = tmp_path / "pred"
    target.write_text("a file")
    with pytest.raises(InputError) as info:
        OutputSet().add(target, directory=True)
    assert str(info.value) == f"output {target} exists and is not a folder"
    assert target.read_text() == "a file" and _leftovers(tmp_path) == []


def test_without_pyav_a_video_without_a_frame_count_is_counted_frame_by_frame(tmp_path, monkeypatch):
    import av

    path = tmp_path / "raw.h264"  # a raw H.264 stream: no container, so no frame count in a header
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        for i in range(7):
            frame = av.VideoFrame.from_ndarray(np.full((32, 64, 3), i * 30, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened() and capture.get(cv2.CAP_PROP_FRAME_COUNT) <= 0  # what the fallback is for
    capture.release()
    monkeypatch.setitem(sys.modules, "av", None)  # a machine without PyAV: `import av` raises ImportError
    assert _io.count_video_frames(path) == 7
    verify_video(path, frames=7)
    with pytest.raises(OutputCheckFailed, match=r"^video reopens with 7 frames, 8 were written$"):
        verify_video(path, frames=8)


def test_a_folder_output_over_a_dangling_symlink_replaces_it_and_a_rollback_restores_it(tmp_path):
    target = tmp_path / "pred"
    target.symlink_to(tmp_path / "gone")
    with pytest.raises(RuntimeError), command_outputs():
        with atomic_output(target, directory=True) as tmp:
            (tmp / "a.json").write_text("{}")
        assert target.is_dir() and not target.is_symlink() and (target / "a.json").exists()
        raise RuntimeError
    assert target.is_symlink() and os.readlink(target) == str(tmp_path / "gone")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]


def test_a_temp_of_a_process_of_another_user_is_kept_by_a_non_root_run():
    # Only a non-root process gets PermissionError from kill(pid, 0) of a root process: a forked child switched to `nobody`
    # runs the cleanup (forked, so it needs no access to the interpreter's files) and reports what it removed.
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another user")
    # pytest's tmp_path is root's only (0700 parents)
    with tempfile.TemporaryDirectory(dir="/tmp") as folder, _live_pid() as other:
        _clean_as_nobody(Path(folder), other)


def _clean_as_nobody(tmp_path, other):
    tmp_path.chmod(0o777)
    init = tmp_path / f".a.json.lrnnet-tmp-{other}-0000abcd.json"  # a live process of root's, not ours
    init.write_text("{}")
    dead = tmp_path / f".a.json.lrnnet-tmp-{_dead_pid()}-0000abcd.json"
    dead.write_text("{}")
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        status = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            removed = sorted(p.name for p in clean_stale_temps(tmp_path / "a.json"))
            os.write(write_end, json.dumps(removed).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = pipe.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert json.loads(report) == [dead.name] and init.exists() and not dead.exists()
