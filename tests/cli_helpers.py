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
