"""Run the real `tunewiz` CLI in a real child process without paying its imports each time.

Most CLI calls in the suite spend 5-6 s of their 7-8 s importing torch, transformers and
peft. This module is both ends of a fork server:

* the server (``python warm_cli.py``) imports those libraries and the CLI once, then, for
  each request, forks a child that takes the request's argv, cwd, environment and stdio and
  runs ``python -m tunewiz`` exactly as a fresh interpreter would: the same ``__main__``
  module, ``SystemExit`` handling, atexit hooks and thread shutdown, its own pid (so
  ``tunewiz stop`` and signals reach it), and ``--detach`` / multi-process launches still
  start fresh interpreters of their own.
* the client (``run``) is what ``conftest.run_cli`` calls. It returns a
  ``subprocess.CompletedProcess`` like ``subprocess.run`` does.

Only the import is shared, so a request whose environment changes something read at import
time (see ``IMPORT_TIME_ENV``) starts a fresh interpreter instead. ``TUNEWIZ_TEST_COLD=1``
runs every call in a fresh interpreter, to compare the two.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# Read by a library while it is imported, so a forked child could not honour a new value.
IMPORT_TIME_ENV = ("HF_", "TRANSFORMERS_", "PYTORCH_", "CUDA_", "PYTHON", "MKL_", "KMP_",
                   "GOMP_", "PEFT_", "ACCELERATE_")
# Read by OpenMP when torch loads; the child applies a new value with torch.set_num_threads.
THREADS_ENV = "OMP_NUM_THREADS"
PRELOAD = ("torch", "transformers", "peft", "tunewiz.cli", "tunewiz.engine.train",
           "tunewiz.engine.convert", "tunewiz.engine.merge", "tunewiz.engine.chat",
           "tunewiz.engine.check_data", "tunewiz.engine.launch", "tunewiz.engine.models")


# ---------------------------------------------------------------- server (the forking side)

def _serve() -> dict | None:
    """Answer requests until stdin closes. Returns the request in a forked child."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    # Imported objects move out of the collector's reach: a child's collections then skip
    # them instead of touching (and so copying) every page the server shares with it.
    import gc

    gc.freeze()
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    replies.write("ready\n")
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            replies.close()
            return req
        replies.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n")
    return None


def _become(req: dict) -> None:
    """Turn this forked child into the process `python -m tunewiz ARGV` would be."""
    os.chdir(req["cwd"])
    old_threads = os.environ.get(THREADS_ENV)
    os.environ.clear()
    os.environ.update(req["env"])
    for fd, path, mode in ((0, req["stdin"], os.O_RDONLY), (1, req["stdout"], os.O_WRONLY),
                           (2, req["stderr"], os.O_WRONLY)):
        new = os.open(path, mode)
        os.dup2(new, fd)
        os.close(new)
    sys.stdin = sys.__stdin__ = open(0, "r", encoding="utf-8", closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="backslashreplace",
                                       buffering=1, closefd=False)
    sys.path[0] = os.getcwd()  # what `-m` puts first
    threads = os.environ.get(THREADS_ENV)
    if threads and threads != old_threads:
        import torch
        torch.set_num_threads(int(threads))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# ------------------------------------------------------------------ client (the test side)

class _Server:
    def __init__(self, env: dict):
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1, env=env,
                                     cwd=Path(__file__).parent)
        self.pending = b""
        self.env = dict(env)
        self.ready = False
        self.served = 0   # requests answered by a forked child (the probe tests read it)
        self.lock = threading.Lock()

    def _line(self, timeout: float | None) -> str:
        """The server's next reply line. Replies are read from the pipe itself into
        self.pending: a buffered reader could swallow the `rc` line together with the `pid`
        line, and select() would then wait for data that has already arrived."""
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                raise TimeoutError
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise ConnectionError("warm CLI server exited")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode()

    def run(self, args, cwd, env, timeout, input) -> subprocess.CompletedProcess:
        with self.lock, tempfile.TemporaryDirectory(prefix="tw-cli-") as tmp:
            if not self.ready:
                assert self._line(300).strip() == "ready"
                self.ready = True
            files = {name: Path(tmp) / name for name in ("stdin", "stdout", "stderr")}
            files["stdin"].write_text(input or "", encoding="utf-8")
            for name in ("stdout", "stderr"):
                files[name].touch()
            req = {"argv": list(args), "cwd": str(cwd or os.getcwd()), "env": env,
                   **{k: str(v) for k, v in files.items()}}
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            pid = json.loads(self._line(60))["pid"]
            try:
                rc = json.loads(self._line(timeout))["rc"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                self._line(60)
                raise subprocess.TimeoutExpired([sys.executable, "-m", "tunewiz", *args], timeout)
            self.served += 1
            read = lambda name: files[name].read_text(encoding="utf-8", errors="replace")
            return subprocess.CompletedProcess([sys.executable, "-m", "tunewiz", *args], rc,
                                               read("stdout"), read("stderr"))

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()


_server: _Server | None = None


def start(env: dict) -> None:
    """Start the server early so its imports overlap with test collection.

    On a GPU machine the server sees no GPU (CUDA_VISIBLE_DEVICES=""): a library could
    initialise the CUDA driver while importing, and a forked child cannot use a driver its
    parent initialised. That is exactly what the tests written for CPU machines see there
    (tests/conftest.py hides the GPU from them), so their calls are served warm; a `gpu`
    test's call differs in CUDA_VISIBLE_DEVICES and starts a fresh interpreter. Without
    this, every CPU call there paid a whole interpreter start: the kill-and-resume chain
    (26 calls; pytest tests/engine/test_faults.py, with and without TUNEWIZ_TEST_COLD=1)
    takes 10 s warm and 96 s cold on a 2-core CPU machine, and cold, on a busy
    16-core GPU machine with CUDA libraries to load, it did not finish within 8 minutes."""
    global _server
    if _server is None and os.environ.get("TUNEWIZ_TEST_COLD") != "1":
        _server = _Server({**env, "CUDA_VISIBLE_DEVICES": ""} if shutil.which("nvidia-smi") else env)


def stop() -> None:
    global _server
    if _server is not None:
        _server.close()
        _server = None


def _needs_fresh_interpreter(env: dict, server_env: dict) -> bool:
    changed = {k for k in set(env) | set(server_env) if env.get(k) != server_env.get(k)}
    return any(k.startswith(IMPORT_TIME_ENV) for k in changed)


def run(args, cwd=None, env: dict | None = None, timeout: int = 600,
        input: str | None = None) -> subprocess.CompletedProcess:
    global _server
    env = dict(env if env is not None else os.environ)
    if _server is not None and not _needs_fresh_interpreter(env, _server.env):
        try:
            return _server.run(args, cwd, env, timeout, input)
        except ConnectionError:
            _server = None
    return subprocess.run([sys.executable, "-m", "tunewiz", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          input=input if input is not None else "")


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter makes of an uncaught SystemExit."""
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


def _shut_down(code: int) -> None:
    """The observable part of interpreter exit: threads joined, atexit hooks run, stdio
    flushed. Tearing down every module of a forked torch process would only copy its
    shared pages back (about 1.7 s a call) and changes nothing a test can see."""
    import atexit

    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    request = _serve()
    if request is not None:
        import runpy
        import traceback

        _become(request)
        sys.argv = ["tunewiz", *request["argv"]]
        del request
        try:
            runpy.run_module("tunewiz", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except KeyboardInterrupt:
            traceback.print_exc()
            code = 128 + signal.SIGINT
        except BaseException:
            traceback.print_exc()
            code = 1
        _shut_down(code)
