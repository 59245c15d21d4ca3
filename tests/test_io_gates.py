"""The output-commit helper (lrnnet._io): an output exists only once it is complete and checked.

Pinned through its public functions on real files: commit on success, nothing on failure, the
read-back check, all-or-nothing for a command (rollback restores the old file) and for an
OutputSet, the preflight refusals, and the stale temporaries of killed runs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import subprocess
import sys
import zipfile

import cv2
import numpy as np
import pytest

from lrnnet import _io
from lrnnet._io import (
    OUTPUT_MARKER,
    TEMP_MARK,
    OutputSet,
    atomic_output,
    check_writable,
    clean_stale_temps,
    clean_stale_temps_in,
    command_outputs,
    is_temp_name,
    refuse_overwrite,
    verify_for,
    write_bytes_atomic,
    write_json_atomic,
)
from lrnnet.errors import InputError


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporary_names_are_recognisable_and_keep_the_suffix(tmp_path):
    tmp = _io.temp_path_for(tmp_path / "out.mp4")
    assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and is_temp_name(tmp.name)
    assert tmp.name.startswith(f".out.mp4{TEMP_MARK}{os.getpid()}-")
    assert tmp != _io.temp_path_for(tmp_path / "out.mp4")  # fresh each time
    assert TEMP_MARK == ".lrnnet-tmp-" and not is_temp_name("out.mp4")


def test_commit_on_success_with_default_permissions(tmp_path):
    target = tmp_path / "sub" / "report.json"  # missing parents are created
    with atomic_output(target) as tmp:
        assert is_temp_name(tmp.name) and tmp.parent == target.parent
        tmp.write_text('{"a": 1}')
        assert not target.exists()
    assert json.loads(target.read_text()) == {"a": 1}
    assert _names(target.parent) == ["report.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_failure_leaves_the_old_target_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text('{"old": true}')
    with pytest.raises(RuntimeError, match="midway"), atomic_output(target) as tmp:
        tmp.write_text('{"new": ')
        raise RuntimeError("midway")
    assert target.read_text() == '{"old": true}' and _names(tmp_path) == ["report.json"]


def test_an_output_that_reads_back_wrong_is_not_committed(tmp_path):
    target = tmp_path / "report.json"
    with pytest.raises(_io.OutputCheckFailed, match=r"report\.json was written but reads back wrong: JSON"), \
            atomic_output(target) as tmp:
        tmp.write_text('{"truncated": ')
    assert _names(tmp_path) == []
    with pytest.raises(_io.OutputCheckFailed, match="nothing was written"), atomic_output(target):
        pass
    assert _names(tmp_path) == []


def test_a_custom_verifier_is_used(tmp_path):
    def refuse(path):
        raise _io.OutputCheckFailed("custom says no")

    with pytest.raises(_io.OutputCheckFailed, match="custom says no"):
        write_bytes_atomic(tmp_path / "x.bin", b"data", verify=refuse)
    assert _names(tmp_path) == []
    write_bytes_atomic(tmp_path / "x.bin", b"data")
    assert (tmp_path / "x.bin").read_bytes() == b"data"


def test_write_json_atomic_round_trip(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"b": [1, 2], "a": None})
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text) == {"b": [1, 2], "a": None} and text.endswith("\n") and text.index('"b"') < text.index('"a"')
    assert text == json.dumps({"b": [1, 2], "a": None}, indent=2) + "\n"


def test_a_folder_output(tmp_path):
    target = tmp_path / "labels"
    with atomic_output(target, directory=True) as tmp:
        assert tmp.is_dir()
        cv2.imwrite(str(tmp / "a.png"), np.full((4, 4), 3, np.uint8))
    assert _names(target) == [OUTPUT_MARKER, "a.png"] and _names(tmp_path) == ["labels"]
    with atomic_output(target, directory=True) as tmp:  # replaces its own old folder as a whole
        cv2.imwrite(str(tmp / "b.png"), np.full((4, 4), 5, np.uint8))
    assert _names(target) == [OUTPUT_MARKER, "b.png"] and _names(tmp_path) == ["labels"]
    with pytest.raises(InputError, match="is a (folder|directory)"), atomic_output(target):
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="exists and is not a folder"), atomic_output(tmp_path / "file", directory=True):
        pass


def test_a_folder_lrnnet_did_not_write_is_never_replaced(tmp_path):
    """A folder output is replaced as a whole when committed: only an empty folder or one lrnnet wrote (it holds
    OUTPUT_MARKER) may be; a folder of someone else's files is refused up front, with and without a scope."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "clip.mp4").write_bytes(b"precious")
    for attempt in (lambda: check_writable(mine, directory=True), lambda: OutputSet().add(mine, directory=True)):
        with pytest.raises(InputError, match="holds files lrnnet did not write; give a new or empty folder"):
            attempt()
    for scoped in (False, True):
        with pytest.raises(InputError, match="holds files lrnnet did not write"), \
                (command_outputs() if scoped else contextlib.nullcontext()), atomic_output(mine, directory=True):
            pass
    assert _names(mine) == ["clip.mp4"] and _names(tmp_path) == ["mine"]
    (tmp_path / "empty").mkdir()  # an empty folder (made for the output) is fine
    check_writable(tmp_path / "empty", directory=True)
    with atomic_output(tmp_path / "empty", directory=True) as tmp:
        (tmp / "a.json").write_text("{}")
    assert _names(tmp_path / "empty") == [OUTPUT_MARKER, "a.json"]
    _io.verify_folder(tmp_path / "empty", files=1)  # the marker is not one of the output's files
    check_writable(mine, directory=True, writes_into=True)  # a folder written into (a run folder) may hold anything


def test_a_folder_filled_while_it_was_written_is_not_replaced(tmp_path):
    target = tmp_path / "labels"
    with pytest.raises(InputError, match="holds files lrnnet did not write"), \
            atomic_output(target, directory=True) as tmp:
        (tmp / "a.json").write_text("{}")
        target.mkdir()
        (target / "theirs.txt").write_text("x")
    assert _names(target) == ["theirs.txt"] and _names(tmp_path) == ["labels"]


def test_an_input_inside_a_folder_output_is_refused(tmp_path):
    """Committing a folder output deletes whatever the old folder held: an input there is refused (symlinks
    resolved); a file output has nothing inside it."""
    (tmp_path / "work" / "seq").mkdir(parents=True)
    video = tmp_path / "work" / "clip.mp4"
    video.write_bytes(b"x")
    (tmp_path / "alias").symlink_to(tmp_path / "work")
    for folder, source in [(tmp_path / "work", video), (tmp_path / "work", tmp_path / "work" / "seq"),
                           (tmp_path / "alias", video), (tmp_path, tmp_path / "alias" / "seq")]:
        with pytest.raises(InputError, match="holds the input"):
            refuse_overwrite([source], [], folders=[folder])
        with pytest.raises(InputError, match="holds the input"):
            _io.preflight(inputs=[source], folders=[folder])
    refuse_overwrite([video], [tmp_path / "work" / "seq" / "out.json"], folders=[tmp_path / "work" / "labels"])
    refuse_overwrite([tmp_path / "work" / "seq"], [], folders=[tmp_path / "work" / "seq_labels"])  # a sibling


def test_command_scope_rolls_back_every_output_it_committed(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text('{"v": 1}')
    with pytest.raises(KeyboardInterrupt), command_outputs():
        write_json_atomic(old, {"v": 2})
        write_json_atomic(new, {"v": 2})
        assert json.loads(old.read_text()) == {"v": 2} and new.exists()  # readable inside the command
        raise KeyboardInterrupt
    assert json.loads(old.read_text()) == {"v": 1} and _names(tmp_path) == ["old.json"]


def test_command_scope_keeps_everything_on_success_and_nested_scopes_hand_over(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text('{"v": 1}')
    with command_outputs():
        write_json_atomic(old, {"v": 2})
    assert json.loads(old.read_text()) == {"v": 2} and _names(tmp_path) == ["old.json"]  # no backup left
    with pytest.raises(ValueError), command_outputs():
        with command_outputs():  # an inner command that succeeded ...
            write_json_atomic(new, {"v": 3})
            write_json_atomic(old, {"v": 3})
        raise ValueError("... inside an outer one that fails")
    assert json.loads(old.read_text()) == {"v": 2} and _names(tmp_path) == ["old.json"]


def test_keep_outputs_makes_what_was_committed_final(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text('{"v": 1}')
    with pytest.raises(RuntimeError), command_outputs():
        write_json_atomic(old, {"v": 2})
        write_json_atomic(new, {"v": 2})
        _io.keep_outputs()  # e.g. build-engine kept the ONNX Runtime engine, then found no TensorRT
        raise RuntimeError("fails after saying what it kept")
    assert json.loads(old.read_text()) == {"v": 2} and json.loads(new.read_text()) == {"v": 2}
    assert _names(tmp_path) == ["new.json", "old.json"]  # and no backup of the old content left behind


def test_output_set_commits_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"old": 1}')
    with pytest.raises(_io.OutputCheckFailed), OutputSet() as out:
        out.add(a).write_text('{"new": 1}')
        out.add(b).write_text("not json")
    assert a.read_text() == '{"old": 1}' and _names(tmp_path) == ["a.json"]
    with pytest.raises(_io.OutputCheckFailed, match="nothing was written"), OutputSet() as out:
        out.add(a).write_text('{"new": 1}')
        out.add(b)
    assert _names(tmp_path) == ["a.json"]
    with pytest.raises(RuntimeError), OutputSet() as out:
        out.add(b).write_text("{}")
        raise RuntimeError
    assert _names(tmp_path) == ["a.json"]
    with OutputSet() as out:
        out.add(a).write_text('{"new": 1}')
        out.add(b).write_text('{"new": 2}')
    assert json.loads(a.read_text()) == {"new": 1} and json.loads(b.read_text()) == {"new": 2}
    assert _names(tmp_path) == ["a.json", "b.json"]
    with pytest.raises(InputError, match="is a (folder|directory)"):
        OutputSet().add(tmp_path)


def test_check_writable_refuses_what_cannot_be_written(tmp_path):
    check_writable(None)
    check_writable(tmp_path / "fine.json")
    assert _names(tmp_path) == []  # the probe is removed
    for bad, message in ((tmp_path, "is a (folder|directory); give a file name"),
                         (tmp_path / "missing" / "x.json", "does not exist; create it first"),
                         (tmp_path / "..", "is not a file name")):
        with pytest.raises(InputError, match=message):
            check_writable(bad)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        check_writable(tmp_path / "file" / "x.json")
    with pytest.raises(InputError, match="exists and is not a folder"):
        check_writable(tmp_path / "file", directory=True)
    check_writable(tmp_path / "labels", directory=True)
    with pytest.raises(InputError, match=r"^report .*is a (folder|directory)"):
        check_writable(tmp_path, what="report")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_writable_refuses_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(InputError, match="cannot write output .*permission denied"):
            check_writable(folder / "x.json")
    finally:
        folder.chmod(0o700)


def test_refuse_overwrite(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    link = tmp_path / "link.onnx"
    link.symlink_to(model)
    hard = tmp_path / "hard.onnx"
    os.link(model, hard)
    refuse_overwrite([model, None], [tmp_path / "out.onnx", None])
    for output in (model, link, hard):
        with pytest.raises(InputError, match="is the input"):
            refuse_overwrite([model], [output])
    with pytest.raises(InputError, match="are the same file"):
        refuse_overwrite([], [tmp_path / "a.json", tmp_path / "." / "a.json"])


def test_stale_temporaries_of_many_outputs_in_one_listing(tmp_path):
    """clean_stale_temps_in: the same rule for several outputs of one folder; returns what it kept (live writers)."""
    dead_a = tmp_path / f".a.mp4{TEMP_MARK}{_dead_pid()}-abcd.mp4"
    dead_b = tmp_path / f".b.mp4.json{TEMP_MARK}{_dead_pid()}-abcd.json"
    live_a = tmp_path / f".a.mp4{TEMP_MARK}{os.getpid()}-abcd.mp4"
    odd = tmp_path / f".a.mp4{TEMP_MARK}notapid-abcd.mp4"
    not_ours = tmp_path / f".c.mp4{TEMP_MARK}{_dead_pid()}-abcd.mp4"
    output = tmp_path / "a.mp4"
    for path in (dead_a, dead_b, live_a, odd, not_ours, output):
        path.write_text("x")
    assert sorted(clean_stale_temps_in(tmp_path, ["a.mp4", "b.mp4.json"])) == sorted([live_a, odd])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live_a, odd, not_ours, output))
    assert clean_stale_temps_in(tmp_path / "missing", ["a.mp4"]) == []


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "out.json"
    dead = tmp_path / f".out.json{TEMP_MARK}{_dead_pid()}-abcd.json"
    live = tmp_path / f".out.json{TEMP_MARK}{os.getpid()}-abcd.json"
    odd = tmp_path / f".out.json{TEMP_MARK}notapid-abcd.json"
    unicode_digits = tmp_path / f".out.json{TEMP_MARK}²-abcd.json"  # a digit to isdigit, not to int()
    no_pid_can_be = tmp_path / f".out.json{TEMP_MARK}{10**30}-abcd.json"  # os.kill raises OverflowError
    other = tmp_path / f".other.json{TEMP_MARK}{_dead_pid()}-abcd.json"
    for path in (dead, live, odd, unicode_digits, no_pid_can_be, other):
        path.write_text("{}")
    dead_dir = tmp_path / f".out.json{TEMP_MARK}{_dead_pid()}-ffff"
    dead_dir.mkdir()
    (dead_dir / "f").write_text("x")
    assert sorted(clean_stale_temps(target)) == sorted([dead, dead_dir, no_pid_can_be])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, odd, unicode_digits, other))
    assert clean_stale_temps(tmp_path / "missing" / "x.json") == []
    write_json_atomic(tmp_path / "other.json", {})  # writing a target cleans its own stale temporaries
    assert not other.exists()


def test_verifiers_by_suffix(tmp_path):
    assert verify_for(tmp_path / "a.json") is _io.verify_json
    assert verify_for(tmp_path / "a.PNG") is _io.verify_image and verify_for(tmp_path / "a.jpg") is _io.verify_image
    assert verify_for(tmp_path / "a.mp4") is _io.verify_video and verify_for(tmp_path / "a.mkv") is _io.verify_video
    assert verify_for(tmp_path / "a.onnx") is _io.verify_onnx
    assert verify_for(tmp_path / "a.pth") is _io.verify_zip and verify_for(tmp_path / "a.pt") is _io.verify_zip
    assert verify_for(tmp_path) is _io.verify_folder
    plain = verify_for(tmp_path / "a.txt")
    with pytest.raises(_io.OutputCheckFailed, match="nothing was written"):
        plain(tmp_path / "a.txt")


def test_verifiers_refuse_broken_files(tmp_path):
    empty = tmp_path / "e.bin"
    empty.write_bytes(b"")
    for verify in (_io.verify_image, _io.verify_onnx, _io.verify_zip, _io.verify_video):
        with pytest.raises(_io.OutputCheckFailed, match="empty"):
            verify(empty)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x08\x96\x01 not a protobuf \xff\xff")
    with pytest.raises(_io.OutputCheckFailed, match="does not decode"):
        _io.verify_image(junk)
    with pytest.raises(_io.OutputCheckFailed, match="ONNX does not parse back"):
        _io.verify_onnx(junk)
    with pytest.raises(_io.OutputCheckFailed, match="archive does not reopen"):
        _io.verify_zip(junk)
    with pytest.raises(_io.OutputCheckFailed, match="video does not reopen"):
        _io.verify_video(junk)
    bad_text = tmp_path / "b.json"
    bad_text.write_bytes(b"\xff\xfe{")
    with pytest.raises(_io.OutputCheckFailed, match="JSON does not parse back"):
        _io.verify_json(bad_text)


def test_zip_verifier_finds_a_corrupt_member(tmp_path):
    path = tmp_path / "c.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("data/0", b"A" * 1000)
    _io.verify_zip(path)
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"A" * 1000) + 10] = ord("B")
    path.write_bytes(bytes(raw))
    with pytest.raises(_io.OutputCheckFailed, match="archive member data/0 is corrupt"):
        _io.verify_zip(path)


def test_video_and_folder_verifiers_count(tmp_path):
    video = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (32, 16))
    for i in range(5):
        writer.write(np.full((16, 32, 3), 40 * i, np.uint8))
    writer.release()
    _io.verify_video(video)
    _io.verify_video(video, frames=5)
    _io.verify_video(video, frames=lambda: 5)
    assert _io.count_video_frames(video) == 5 == _io._count_frames_opencv(video)
    with pytest.raises(_io.OutputCheckFailed, match="reopens with 5 frames, 6 were written"):
        _io.verify_video(video, frames=6)
    folder = tmp_path / "labels"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), np.zeros((4, 4), np.uint8))
    _io.verify_folder(folder, files=2)
    _io.verify_folder(folder, files=lambda: 2)
    with pytest.raises(_io.OutputCheckFailed, match="folder holds 2 files, 3 were written"):
        _io.verify_folder(folder, files=3)
    (folder / "c.png").write_bytes(b"not a png")
    with pytest.raises(_io.OutputCheckFailed, match="does not decode"):
        _io.verify_folder(folder)


@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, "the disk is full; free some space or write elsewhere"),
    (errno.EDQUOT, "the disk quota is exceeded; free some space or write elsewhere"),
    (errno.EROFS, "the file system is read-only; write elsewhere"),
    (errno.EACCES, "permission denied; write elsewhere or change the folder's permissions"),
    (errno.EPERM, "operation not permitted; write elsewhere or change the folder's permissions"),
    (errno.EFBIG, "the file is too large for this file system; write elsewhere"),
])
def test_os_errors_are_described_with_what_to_do(code, words):
    assert _io.describe_os_error(OSError(code, os.strerror(code), "/out/x.mp4")) == f"{words} (/out/x.mp4)"
    assert _io.describe_os_error(OSError(code, os.strerror(code))) == words


def test_other_os_errors_keep_their_own_words_and_name_the_output_not_its_temporary():
    assert _io.describe_os_error(OSError(errno.EIO, "Input/output error", "f")) == "Input/output error (f)"
    assert _io.describe_os_error(OSError("just text")) == "just text"
    tmp = f"/out/.x.mp4{TEMP_MARK}123-abcd.mp4"
    assert _io.describe_os_error(OSError(errno.ENOSPC, "No space", tmp)) == \
        "the disk is full; free some space or write elsewhere (/out/x.mp4)"


def test_target_of_a_temporary_name():
    from pathlib import Path

    assert _io.target_of(f"/out/.x.mp4{TEMP_MARK}123-abcd.mp4") == Path("/out/x.mp4")
    assert _io.target_of(f"/out/.labels{TEMP_MARK}9-ff/a_trainIds.png") == Path("/out/labels/a_trainIds.png")
    assert _io.target_of(f"rel/.r.json{TEMP_MARK}1-00.json") == Path("rel/r.json")
    assert _io.target_of("/out/x.mp4") == Path("/out/x.mp4")
    assert _io.target_of(f"/out/x{TEMP_MARK}1.mp4") == Path(f"/out/x{TEMP_MARK}1.mp4")  # not hidden: not ours
    assert _io.target_of(_io.temp_path_for(Path("/a/b.onnx"))) == Path("/a/b.onnx")


def test_free_bytes(tmp_path):
    free = _io.free_bytes(tmp_path / "not-yet")
    assert free is not None and free > 0
    assert free == os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize or free > 0


def test_write_image_encodes_by_suffix_and_names_the_file_on_failure(tmp_path):
    image = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) % 19).astype(np.uint8)
    _io.write_image(tmp_path / "a.png", image)
    assert np.array_equal(cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED), image)  # lossless PNG
    colour = np.dstack([image * 10, image * 5, image]).astype(np.uint8)
    _io.write_image(tmp_path / "b.jpg", colour)
    assert (tmp_path / "b.jpg").read_bytes()[:2] == b"\xff\xd8"  # a JPEG, chosen by the suffix
    _io.write_image(tmp_path / "noext", image)
    assert (tmp_path / "noext").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # PNG when there is no suffix
    with pytest.raises(FileNotFoundError) as caught:
        _io.write_image(tmp_path / "missing" / "d.png", image)
    assert caught.value.filename == str(tmp_path / "missing" / "d.png") and caught.value.errno == errno.ENOENT


def test_preflight_checks_inputs_outputs_and_folders(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    _io.preflight(inputs=[model, None], outputs=[tmp_path / "out.onnx", None], folders=[tmp_path / "labels", None])
    assert _names(tmp_path) == ["model.onnx"]  # the probes are gone
    with pytest.raises(InputError, match="is the input"):
        _io.preflight(inputs=[model], outputs=[model])
    with pytest.raises(InputError, match="is the input"):
        _io.preflight(inputs=[model], folders=[model])
    with pytest.raises(InputError, match="does not exist"):
        _io.preflight(outputs=[tmp_path / "missing" / "x.json"])
    with pytest.raises(InputError, match="exists and is not a folder"):
        _io.preflight(folders=[model])
    with pytest.raises(InputError, match="is a (folder|directory)"):
        _io.preflight(outputs=[tmp_path])
    _io.preflight()


def test_check_writable_messages_in_full(tmp_path):
    with pytest.raises(InputError) as caught:
        check_writable(tmp_path / ".")
    assert str(caught.value) == f"output {tmp_path} is a directory; give a file name such as {tmp_path / '<name>'}"
    with pytest.raises(InputError) as caught:
        check_writable(".")
    assert str(caught.value) == "output . is not a file name"
    with pytest.raises(InputError) as caught:
        check_writable(tmp_path / "no" / "x.json")
    assert str(caught.value) == f"output {tmp_path / 'no' / 'x.json'}: folder {tmp_path / 'no'} does not exist; create it first"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError) as caught:
        check_writable(fifo)
    assert str(caught.value) == f"output {fifo} is not a regular file; give a file name"
    (tmp_path / "plain.json").write_text("{}")
    check_writable(tmp_path / "plain.json")  # an existing regular file may be replaced
    assert (tmp_path / "plain.json").read_text() == "{}"


def test_check_writable_with_parents_to_make(tmp_path):
    target = tmp_path / "runs" / "a" / "b" / "ckpt.pth"
    check_writable(target, make_parents=True)  # the nearest existing folder takes files
    assert _names(tmp_path) == []  # nothing created, no probe left
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=r"file is not a folder"):
        check_writable(tmp_path / "file" / "sub" / "x.json", make_parents=True)


def test_check_writable_remembers_the_output_for_the_command(tmp_path):
    with command_outputs():
        check_writable(tmp_path / "a.json")
        assert tmp_path / "a.json" in _io.watched_outputs()


def test_check_input_says_what_the_path_is_instead(tmp_path):
    a_file = tmp_path / "model.onnx"
    a_file.write_bytes(b"x")
    assert _io.check_input(a_file, "model file") == a_file
    assert _io.check_input(tmp_path, "root", folder=True) == tmp_path
    for path, folder, message in ((tmp_path / "nope", False, f"model file {tmp_path / 'nope'} does not exist"),
                                  (tmp_path, False, f"model file {tmp_path} is a directory, not a file"),
                                  (a_file, True, f"model file {a_file} is a file, not a folder")):
        with pytest.raises(InputError) as caught:
            _io.check_input(path, "model file", folder=folder)
        assert str(caught.value) == message
