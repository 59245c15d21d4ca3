"""run_command's edges in real processes: a reader that closes stdout early, and Ctrl-C at any moment.

A closed stdout (`lrnnet-infer v.mp4 | head -1`) is not a failure of the work: the command goes on,
its outputs stay, and nothing is said about the pipe. Ctrl-C from the moment a command's module
is imported (parser building and its heavy imports included) is one line and exit 130.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lrnnet.cli._common import make_parser, run_command

PROG = "lrnnet-gate"


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("LRNNET_DEBUG", "PYTHONUNBUFFERED")}
    return {**env, "LRNNET_NO_PROGRESS": "1", **extra}


def _with_stdout_closed(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `argv` with its stdout a pipe whose reader is gone before the command writes anything."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    return proc.wait(timeout=120), err


def _assert_nothing_about_the_pipe(err: str) -> None:
    for text in ("Traceback", "Exception ignored", "BrokenPipe", "Broken pipe", "error:"):
        assert text not in err, err


@pytest.mark.parametrize("unbuffered", [False, True])
def test_infer_into_a_closed_pipe_finishes_and_keeps_its_outputs(tiny_onnx, synthetic_video, tmp_path, unbuffered):
    out, report = tmp_path / "out.mp4", tmp_path / "report.json"
    env = _env(**({"PYTHONUNBUFFERED": "1"} if unbuffered else {}))
    status, err = _with_stdout_closed([sys.executable, "-m", "lrnnet.cli.infer", str(synthetic_video), "--model",
                                       str(tiny_onnx), "-o", str(out), "--report", str(report), "--max-frames", "3"],
                                      env)
    assert status == 0, err
    _assert_nothing_about_the_pipe(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "report.json"]  # kept, not rolled back


def test_bench_piped_into_head_prints_its_first_line_and_succeeds(tiny_onnx, tmp_path):
    script = (f"{sys.executable} -m lrnnet.cli.bench --model {tiny_onnx} --warmup 0 --iters 2 --no-peak "
              f"--json {tmp_path / 'bench.json'} | head -1; echo status ${{PIPESTATUS[0]}}")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=_env(PYTHONUNBUFFERED="1"),
                          timeout=120, check=False)
    assert done.stdout.splitlines() == [f"model: {tiny_onnx} (onnxruntime, fp32)", "status 0"], done.stderr
    _assert_nothing_about_the_pipe(done.stderr)
    assert (tmp_path / "bench.json").is_file()


_LATE_WRITES = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from lrnnet._io import write_json_atomic
    from lrnnet.cli._common import make_parser, run_command

    def body(args):
        print("first line", flush=True)
        while not Path(sys.argv[1]).exists():  # the reader has read a line and gone
            time.sleep(0.01)
        for i in range(2000):
            print("more output", i)
        write_json_atomic(sys.argv[2], {"done": True})
        print("last line")

    raise SystemExit(run_command("lrnnet-gate", body, make_parser("lrnnet-gate", "x"), []))
""")


def test_a_reader_gone_in_the_middle_is_no_failure(tmp_path):
    gone, out = tmp_path / "gone", tmp_path / "out.json"
    proc = subprocess.Popen([sys.executable, "-c", _LATE_WRITES, str(gone), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(), text=True)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == "first line\n"
    proc.stdout.close()
    gone.touch()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    _assert_nothing_about_the_pipe(err)
    assert json.loads(out.read_text(encoding="utf-8")) == {"done": True}


def test_the_guard_leaves_sys_stdout_as_it_found_it(capsys):
    before = sys.stdout
    assert run_command(PROG, lambda args: print("hello"), make_parser(PROG, "x"), []) == 0
    assert sys.stdout is before and capsys.readouterr().out == "hello\n"


# A command's module is imported, says so on stderr, then runs its main(): the signal is sent after that.
_RUN_MAIN = ("import sys; import lrnnet.cli.{module} as command; sys.stderr.write('imported\\n'); "
             "sys.stderr.flush(); raise SystemExit(command.main(sys.argv[1:]))")


def _interrupt_after(delay_s: float, module: str, argv: list[str]) -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, "-c", _RUN_MAIN.format(module=module), *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=_env(), text=True)
    assert proc.stderr is not None
    assert proc.stderr.readline() == "imported\n"
    time.sleep(delay_s)
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    return proc.wait(timeout=120), err


@pytest.mark.slow
@pytest.mark.parametrize("module", ["infer", "export"])
def test_ctrl_c_at_any_moment_after_the_module_starts_is_one_line_and_130(module, tiny_checkpoint, tiny_onnx,
                                                                          synthetic_video, tmp_path):
    argv = {"infer": [str(synthetic_video), "--model", str(tiny_onnx), "-o", str(tmp_path / "out.mp4")],
            "export": [str(tiny_checkpoint), "-o", str(tmp_path / "out.onnx"), "--height", "64", "--width", "128"]}
    stopped = 0
    # From 10 ms: at 0 the signal can land in the harness's own line between its write and main() (as in a
    # console script between its import and main(): microseconds, outside any code of ours).
    for delay_s in (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4):
        status, err = _interrupt_after(delay_s, module, argv[module])
        assert "Traceback" not in err and "Exception ignored" not in err, (delay_s, err)
        errors = [line for line in err.splitlines() if "error" in line.lower()]
        if status == 0:  # finished before the signal came
            assert errors == [], (delay_s, err)
            continue
        assert status == 130 and errors == [f"lrnnet-{module}: error: interrupted; no output was written"], \
            (delay_s, status, err)
        assert list(tmp_path.iterdir()) == []
        stopped += 1
    assert stopped >= 5  # the startup window is what is tested


def test_a_stop_during_an_import_waits_for_the_import_and_then_stops(tmp_path, capsys, monkeypatch):
    """The signal is not raised inside an import (torch's C++ import code aborts the process on it, and a
    half-imported C extension fails later with another error): it comes again once the import is over."""
    (tmp_path / "slow_module_b.py").write_text(textwrap.dedent("""
        import os, signal, time
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the handler runs during this, inside the import
        COMPLETE = True
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    reached: list[str] = []

    def body(args):
        import slow_module_b

        reached.append("imported" if slow_module_b.COMPLETE else "partial")
        time.sleep(5)  # the signal sent again arrives here
        reached.append("not stopped")

    assert run_command(PROG, body, make_parser(PROG, "x"), []) == 130
    assert reached == ["imported"]
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"{PROG}: error: interrupted; no output was written"
    sys.modules.pop("slow_module_b", None)


def test_a_stop_while_the_parser_is_built_is_one_line_and_130(capsys):
    def build():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
        raise AssertionError("not interrupted")

    assert run_command(PROG, lambda args: 0, build, []) == 130
    assert capsys.readouterr().err.strip().splitlines() == [f"{PROG}: error: interrupted; no output was written"]


def test_the_command_modules_import_nothing_heavy_at_module_level():
    """What a console script imports before main() runs is outside run_command: it must stay light."""
    modules = ("bench", "build_engine", "demo", "eval", "export", "infer", "train")
    heavy = ("torch", "onnx", "onnxruntime", "cv2", "numpy", "av", "ray", "tensorrt", "lrnnet.runtime")
    code = (f"import sys\nfor name in {modules!r}: __import__('lrnnet.cli.' + name)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r} or m.startswith({heavy!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout
