"""Running the ``edgecnn`` app in-process and checking its one-line error contract."""

from typer.testing import CliRunner

from edgecnn.cli import app

runner = CliRunner()


def invoke(*args):
    """Run ``edgecnn ARGS...``; paths and numbers may be passed as they are."""
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, match=None, code=2):
    """Bad input: exit ``code``, one line starting ``error:`` on stderr, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    if match:
        assert match in lines[0], lines[0]


def run_cli_without(args, forbidden):
    """Run ``edgecnn ARGS`` in a fresh interpreter; it must succeed and import none of
    ``forbidden``. Returns the finished process (stdout as text)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        f"sys.argv = ['edgecnn', *{[str(a) for a in args]!r}]\n"
        "from edgecnn.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        f"loaded = [m for m in {tuple(forbidden)!r} if m in sys.modules]\n"
        "assert not loaded, f'imported: {loaded}'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


def interruptible():
    """``preexec_fn`` for a child that will get SIGINT: Ctrl-C back to its default.

    A shell starting the tests in the background (``nohup ... &``) makes them ignore
    SIGINT, and children inherit that; Python then never raises KeyboardInterrupt.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def peak_rss_mb(code: str, *args) -> tuple[float, float, str]:
    """Run ``code`` in a fresh interpreter: (peak RSS before the work, after, stderr).

    ``code`` calls ``mark()`` when its set-up is done; the peak grows only with the work.
    ``sys`` is imported for it; ``args`` are its ``sys.argv[1:]``.
    """
    import subprocess
    import sys

    prelude = (
        "import sys\n"
        "def hwm():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1]) / 1024\n"
        "marks = []\n"
        "def mark():\n"
        "    marks.append(hwm())\n"
    )
    epilogue = "\nprint(marks[0], hwm())\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + code + epilogue, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = map(float, done.stdout.split()[-2:])
    return before, after, done.stderr
