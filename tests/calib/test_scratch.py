"""INT8's scratch folder: a build killed with SIGKILL leaves it (and ONNX Runtime's temporaries inside), the next removes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from lrnnet._io import scratch_folder

_KILLED_BUILD = textwrap.dedent("""
    import os, signal, sys, tempfile
    from lrnnet._io import scratch_folder

    with scratch_folder("lrnnet-int8") as folder:
        quant = tempfile.mkdtemp(prefix="ort.quant.")  # as ONNX Runtime's quantize_static makes its own
        open(os.path.join(quant, "augmented_model.onnx"), "wb").write(b"model-sized")
        print(folder, quant, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_builds_temporaries_are_removed_by_the_next(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", _KILLED_BUILD], check=False, capture_output=True, text=True,
                         env=env)  # it kills itself
    assert run.returncode == -signal.SIGKILL
    folder, quant = (Path(p) for p in run.stdout.split())
    assert folder.parent == tmp_path and Path(quant).parent == folder  # ONNX Runtime's inside lrnnet's
    assert (Path(quant) / "augmented_model.onnx").is_file()  # left by the kill
    saved = tempfile.tempdir
    tempfile.tempdir = str(tmp_path)
    try:
        with scratch_folder("lrnnet-int8") as mine:
            assert not folder.exists()  # the next run removed it: its writer is gone
            assert Path(tempfile.mkdtemp()).parent == mine
        assert not mine.exists() and list(tmp_path.iterdir()) == []
    finally:
        tempfile.tempdir = saved
