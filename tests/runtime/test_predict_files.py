"""``edgecnn predict`` over many files: folders, globs, batches, streaming, errors, progress.

Real pictures (Fashion-MNIST test images saved as PNG, JPEG, BMP) and the checked-in tiny
models; more than one batch of pictures, so that the decoding worker processes run too.
"""

import json
import os
import pty
import select
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from PIL import Image
from shared import PICTURE, TINY, TINY_FILES

from edgecnn.runtime import load_classifier
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.predict import walk

MODEL = TINY / "model_int8.tflite"


def save_pictures(folder, images, start=0, suffix=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images, start):
        path = folder / f"{i:05d}{suffix}"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def jsonl(result):
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def mixed(test_images, tmp_path_factory):
    """A tree of 600 pictures (PNG, a few JPEG and BMP, some dark-on-light), two arrays and
    files that are neither; the names in the order ``edgecnn predict`` must read them; and
    300 more pictures in a folder beside it."""
    root = tmp_path_factory.mktemp("mixed")
    x = test_images.x
    inner = save_pictures(root / "a" / "inner", x[300:330])
    a = save_pictures(root / "a", 255 - x[330:340], start=330)  # dark-on-light
    b = save_pictures(root / "b", x[:300])
    jpegs = save_pictures(root / "c", x[340:345], suffix=".jpg")
    bmps = save_pictures(root / "c", x[345:350], start=345, suffix=".BMP")
    np.save(root / "c" / "batch.npy", x[350:360])
    np.save(root / "c" / "float.npy", x[360:363].astype(np.float32) / 255)
    (root / "c" / "notes.txt").write_text("not a picture")
    (root / "b" / ".hidden.png").write_bytes(b"not read")
    arrays = [f"{root / 'c' / 'batch.npy'}[{i}]" for i in range(10)]
    arrays += [f"{root / 'c' / 'float.npy'}[{i}]" for i in range(3)]
    # a/00330.png sorts before a/inner/: a folder's contents come where its name sorts.
    names = [str(p) for p in (*a, *inner, *b, *jpegs, *bmps)] + arrays
    beside = save_pictures(root.parent / f"{root.name}_beside", x[363:663])
    return root, names, beside


def test_a_folder_is_read_in_sorted_path_order_with_a_note_on_what_is_left_out(mixed):
    root, names, _ = mixed
    result = invoke("predict", MODEL, root, "--jsonl")
    assert [r["file"] for r in jsonl(result)] == names
    assert result.stderr.count("\n") == 1 and "left out 1 file of other kinds" in result.stderr
    assert "notes.txt" in result.stderr and ".hidden" not in result.stdout


def test_globs_files_and_folders_mix_and_keep_their_order(mixed, test_images):
    root, names, beside = mixed
    pattern = str(beside[0].parent / "*.png")
    batch = root / "c" / "batch.npy"
    args = [PICTURE, pattern, root / "c", batch, str(root / "**" / "0033?.png")]
    rows = jsonl(invoke("predict", MODEL, *args, "--jsonl", "--top-k", "1"))
    c_folder = [n for n in names if os.sep + "c" + os.sep in n]
    recursive = [n for n in names if os.path.basename(n).startswith("0033")]
    assert len(recursive) == 10 and len(c_folder) == 23
    batch_names = [n for n in names if n.startswith(f"{batch}[")]
    expected = [str(PICTURE), *map(str, beside), *c_folder, *batch_names, *recursive]
    assert [r["file"] for r in rows] == expected


@pytest.mark.parametrize("model", TINY_FILES)
def test_batched_results_are_those_of_each_input_alone(model, mixed):
    root, names, _ = mixed
    rows = jsonl(invoke("predict", TINY / model, root, "--jsonl", "--top-k", "10"))
    assert [r["file"] for r in rows] == names
    clf = load_classifier(TINY / model)
    arrays = {}
    for row in rows:
        name = row["file"]
        source = name
        if name.endswith("]"):
            path, index = name[:-1].split("[")
            source = arrays.setdefault(path, np.load(path))[int(index)]
        expected = clf.predict(source)[0]
        got = {t["label"]: t["probability"] for t in row["top_k"]}
        probs = np.array([got[label] for label in clf.labels], np.float32)
        if model == "weights.npz":
            # numpy's matrix products sum in blocks that depend on the batch size (the
            # backend's own batches differ from single images by as much).
            np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5, err_msg=name)
            assert row["label"] == clf.labels[int(expected.argmax())]
            continue
        np.testing.assert_array_equal(probs, expected, err_msg=name)
        assert [(t["label"], t["probability"]) for t in row["top_k"]] == clf.classify(
            source, top_k=10
        )


def test_text_lines_are_aligned_and_name_every_input(mixed):
    root, names, _ = mixed
    result = invoke("predict", MODEL, root / "c")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    width = max(len(n) for n in names if os.sep + "c" + os.sep in n)
    assert [line[:width].rstrip() for line in lines] == [
        n for n in names if os.sep + "c" + os.sep in n
    ]
    assert len({line.index("%") for line in lines}) == 1


def test_json_document_is_streamed_whole_and_jsonl_has_one_object_per_input(mixed):
    root, names, _ = mixed
    result = invoke("predict", MODEL, root, "--json", "--top-k", "2")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["model"] == str(MODEL) and doc["backend"] == "litert"
    assert [r["file"] for r in doc["results"]] == names
    # One result per line, so that a reader can follow it as it grows.
    assert len(result.stdout.splitlines()) == len(names) + 2
    lines = invoke("predict", MODEL, root, "--jsonl", "--top-k", "2").stdout.splitlines()
    assert [json.loads(line) for line in lines] == doc["results"]
    first = doc["results"][0]
    assert set(first) == {"file", "label", "unknown", "top_label", "confidence", "top_k"}
    # The tiny files have no "unknown" threshold: the label is the top class.
    assert first["label"] == first["top_label"] == first["top_k"][0]["label"]
    assert first["unknown"] is False
    assert lines[0] == json.dumps(first)  # written as json.dumps writes it
    assert_one_line_error(invoke("predict", MODEL, PICTURE, "--json", "--jsonl"), "choose one")


def test_missing_inputs_are_one_line_errors_before_any_result(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "only_text").mkdir()
    (tmp_path / "only_text" / "a.txt").write_text("x")
    cases = {
        tmp_path / "missing.png": "does not exist",
        tmp_path / "empty": "holds no pictures",
        tmp_path / "only_text": "(1 other files)",
        str(tmp_path / "*.png"): "no files match",
        str(tmp_path / "**" / "*.jpg"): "no files match",
    }
    for argument, message in cases.items():
        result = invoke("predict", MODEL, PICTURE, argument)
        assert_one_line_error(result, message)
        assert result.stdout == ""


@pytest.fixture(scope="module")
def one_bad(test_images, tmp_path_factory):
    """300 pictures, the 290th of them damaged: the error comes in the second batch."""
    folder = tmp_path_factory.mktemp("one_bad")
    paths = save_pictures(folder, test_images.x[:300])
    paths[290].write_bytes(paths[290].read_bytes()[:60])
    return folder, paths


def test_a_bad_picture_stops_the_run_after_the_results_before_it(one_bad):
    folder, paths = one_bad
    result = invoke("predict", MODEL, folder)
    assert_one_line_error(result, f"{paths[290]} is not a PNG, JPEG or BMP image")
    assert [line.split()[0] for line in result.stdout.splitlines()] == list(map(str, paths[:290]))
    result = invoke("predict", MODEL, folder, "--json")
    assert result.exit_code == 2 and result.stdout.count('"file"') == 290
    with pytest.raises(json.JSONDecodeError):  # left open: no reader takes it for whole
        json.loads(result.stdout)


def test_skip_bad_reports_each_bad_input_in_its_place_and_goes_on(one_bad, tmp_path):
    folder, paths = one_bad
    result = invoke("predict", MODEL, folder, "--skip-bad")
    assert result.exit_code == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        str(p) for i, p in enumerate(paths) if i != 290
    ]
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"skipped: {paths[290]} is not a PNG") and len(lines) == 2
    assert lines[1] == "note: skipped 1 of 300 inputs: unreadable"
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5, 5), np.uint8))
    rows = jsonl(invoke("predict", MODEL, folder, tmp_path / "wrong.npy", "--jsonl", "--skip-bad"))
    assert len(rows) == 301 and [i for i, r in enumerate(rows) if "error" in r] == [290, 300]
    assert set(rows[290]) == {"file", "error"} and rows[290]["file"] == str(paths[290])
    assert "must have shape" in rows[300]["error"]


def _run_on_terminal(args, tmp_path):
    """``edgecnn ARGS`` with stderr on a pseudo-terminal; (stdout, what the terminal got)."""
    leader, follower = pty.openpty()
    with open(tmp_path / "stdout.txt", "w+") as out:
        process = subprocess.Popen([sys.executable, "-m", "edgecnn", *map(str, args)],
                                   stdout=out, stderr=follower)  # fmt: skip
        os.close(follower)
        seen = b""
        while select.select([leader], [], [], 60)[0]:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other side closed
                break
            if not chunk:
                break
            seen += chunk
        os.close(leader)
        assert process.wait(timeout=60) == 0, seen
        out.seek(0)
        return out.read(), seen.decode()


def test_the_progress_bar_is_drawn_on_a_terminal_only(test_images, tmp_path):
    np.save(tmp_path / "many.npy", np.tile(test_images.x[:1000], (3, 1, 1)))
    stdout, terminal = _run_on_terminal(["predict", MODEL, tmp_path / "many.npy"], tmp_path)
    assert len(stdout.splitlines()) == 3000
    assert "3,000/3,000" in terminal and "img/s" in terminal and "ETA" in terminal
    assert "3,000 images in" in terminal.splitlines()[-1]
    quiet = ["predict", MODEL, tmp_path / "many.npy", "--no-progress"]
    stdout, terminal = _run_on_terminal(quiet, tmp_path)
    assert len(stdout.splitlines()) == 3000 and terminal == ""
    command = [sys.executable, "-m", "edgecnn", "predict", MODEL, tmp_path / "many.npy"]
    piped = subprocess.run(command, capture_output=True, text=True)
    assert piped.returncode == 0 and piped.stderr == ""


PEAK = """
import sys, tracemalloc
tracemalloc.start()
sys.argv = ["edgecnn", "predict", *sys.argv[1:]]
from edgecnn.cli import main
try:
    main()
except SystemExit as e:
    assert e.code == 0, e.code
print(tracemalloc.get_traced_memory()[1], file=sys.stderr)
"""


def test_memory_does_not_grow_with_the_number_of_inputs(test_images, tmp_path):
    """Peak Python and numpy memory over 20,000 images against 1,000: the results are
    written as they come, never collected (as they were once: 75 MB more)."""
    peaks = {}
    for count in (1_000, 20_000):
        path = tmp_path / f"{count}.npy"
        np.save(path, np.resize(test_images.x, (count, 28, 28)))
        command = [sys.executable, "-c", PEAK, str(MODEL), str(path), "--json"]
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert done.returncode == 0, done.stderr
        peaks[count] = int(done.stderr.split()[-1])
    assert peaks[20_000] - peaks[1_000] < 2 << 20, peaks


def test_batches_are_full_and_hold_one_kind_of_image():
    from edgecnn.runtime.predict.batches import NpySlice, make_batches
    from edgecnn.runtime.predict.inputs import NpyFile, Refused

    floats = NpyFile("f.npy", 3, False, False)
    uint8 = NpyFile("u.npy", 300, False, True)
    sources = ["a.png", Refused("r.npy", "bad"), floats, "b.png", uint8, *["c.png"] * 300]
    made = list(make_batches(sources, 256))
    assert [(j.count, j.uint8) for j in made] == [(2, True), (3, False), (256, True),
                                                   (256, True), (89, True)]  # fmt: skip
    # An array fills the batch a picture began, and goes on in the next.
    assert made[2].items[1:] == (NpySlice(uint8, 0, 255),)
    assert made[3].items[0] == NpySlice(uint8, 255, 300)
    names = [n for j in made for n in j.names()]
    assert names[:6] == ["a.png", "r.npy", "f.npy[0]", "f.npy[1]", "f.npy[2]", "b.png"]
    assert len(names) == 2 + 3 + 1 + 300 + 300


def test_a_closed_pipe_stops_the_run_quietly(test_images, tmp_path):
    np.save(tmp_path / "many.npy", np.tile(test_images.x[:1000], (3, 1, 1)))
    command = [sys.executable, "-m", "edgecnn", "predict", MODEL, tmp_path / "many.npy"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith(str(tmp_path).encode())
    process.stdout.close()  # as `| head -1` does
    assert process.wait(timeout=60) == 141
    assert process.stderr.read() == b""


def test_workers_fill_the_cores_unless_the_backend_does(monkeypatch):
    from edgecnn.runtime.predict import workers

    monkeypatch.setattr(workers, "cores", lambda: 4)
    assert workers.worker_count(1, "m.tflite") == 4 and workers.worker_count(1, "m.onnx") == 4
    assert workers.worker_count(2, "m.tflite") == 2 and workers.worker_count(8, "m.tflite") == 1
    assert workers.worker_count(1, "weights.npz") == 1  # numpy's BLAS takes every core itself
    monkeypatch.setattr(workers, "cores", lambda: 64)
    assert workers.worker_count(1, "m.tflite") == workers.MAX_WORKERS


def test_a_worker_that_cannot_load_the_model_says_why(tmp_path, monkeypatch):
    """Its batches raise the load's own error, which ``predict`` prints as one line."""
    import signal

    from edgecnn.runtime import ModelError
    from edgecnn.runtime.predict import workers
    from edgecnn.runtime.predict.batches import make_batches

    monkeypatch.setattr(workers, "_model", None)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    (tmp_path / "model.tflite").write_bytes(b"not a model")
    try:
        workers._start_worker(workers.ModelSpec(str(tmp_path / "model.tflite"), "auto", 1, True))
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    job = next(make_batches([str(PICTURE)]))
    with pytest.raises(ModelError, match="model.tflite"):
        workers._classify_in_worker(job, (28, 28, 1), True, False)


def test_workers_are_forked_only_before_an_interpreter_is_loaded():
    from edgecnn.runtime.predict import workers

    code = (
        "from edgecnn.runtime import load_classifier; "
        "from edgecnn.runtime.predict import workers; print(workers.start_method())"
    )
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert fresh.stdout.strip() == "fork", fresh.stderr
    load_classifier(MODEL)  # this session's interpreter threads: never fork them
    assert workers.start_method() == "forkserver"


DYING_WORKER = """
import os, sys
from edgecnn.runtime.predict import workers

classify = workers._classify_in_worker

def dying(job, *args):  # a worker killed (the OOM killer, a crash) on the second batch
    if any(name.endswith("00300.png") for name in job.names()):
        os._exit(9)
    return classify(job, *args)

workers._classify_in_worker = dying
sys.argv = ["edgecnn", "predict", *sys.argv[1:]]
from edgecnn.cli import main
main()
"""


def test_a_worker_that_dies_ends_the_run_with_one_line(test_images, tmp_path):
    from edgecnn.runtime.predict import workers

    if not workers.workers_pay(600):
        pytest.skip("worker processes run on Linux with two cores or more")
    paths = save_pictures(tmp_path / "pictures", test_images.x[:600])
    command = [sys.executable, "-c", DYING_WORKER, str(MODEL), str(tmp_path / "pictures")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: a worker process died (killed, or out of memory); the "
                           "run stopped before the batch that starts at ")  # fmt: skip
    start = paths.index(tmp_path / "pictures" / line.split(" starts at ")[1].split(", ")[0])
    assert start in (0, 256)  # the first batch may be lost with the second
    assert [r.split()[0] for r in done.stdout.splitlines()] == list(map(str, paths[:start]))


def run_predict(*args, timeout=60):
    """``edgecnn predict ARGS`` in its own process, which must end within ``timeout`` s."""
    command = [sys.executable, "-m", "edgecnn", "predict", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_a_pattern_follows_no_link_to_a_folder_and_reads_each_folder_once(test_images, tmp_path):
    """Two links back to parent folders once made ``loop/**/*.png`` endless (its memory
    growing by hundreds of MB); a pattern walks folders as a folder argument does."""
    loop = tmp_path / "loop"
    top = save_pictures(loop, test_images.x[:3])
    deep = save_pictures(loop / "a" / "b", test_images.x[3:6], start=3)
    (loop / "a" / "b" / "up").symlink_to("..")
    (loop / "a" / "b" / "top").symlink_to(loop)
    (loop / "a" / "link.png").symlink_to(top[0])  # a link to a picture is a picture
    (loop / "a" / ".hidden.png").write_bytes(b"not read")
    done = run_predict(MODEL, loop / "**" / "*.png", "--jsonl")
    assert done.returncode == 0, done.stderr
    files = [json.loads(line)["file"] for line in done.stdout.splitlines()]
    assert files == [*map(str, top), *map(str, deep), str(loop / "a" / "link.png")]
    # A folder the pattern matches stands for its pictures: none of them comes twice.
    rows = jsonl(invoke("predict", MODEL, str(loop / "**"), "--jsonl"))
    assert [r["file"] for r in rows] == files


def test_a_pattern_over_proc_ends_at_once(tmp_path):
    """``/proc/**`` once ran on through /proc/self/root into the whole disk, again and again."""
    done = run_predict(MODEL, "/proc/**/*.png")
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line in (
        "error: no files match /proc/**/*.png",
        f"error: /proc/**/*.png reaches more than {walk.MAX_SCANNED:,} files and folders "
        "under /proc: give a narrower pattern, or the folder itself",
    )


def test_a_pattern_that_reaches_too_far_is_one_line(mixed, monkeypatch):
    root, names, _ = mixed
    pattern = str(root / "**" / "*.png")
    assert [r["file"] for r in jsonl(invoke("predict", MODEL, pattern, "--jsonl"))] == [
        n for n in names if n.endswith(".png")
    ]
    monkeypatch.setattr(walk, "MAX_SCANNED", 100)
    result = invoke("predict", MODEL, pattern)
    assert_one_line_error(result, f"{pattern} reaches more than 100 files and folders under {root}")
    assert result.stdout == ""


def test_a_folder_that_reaches_too_far_is_one_line(mixed, monkeypatch):
    """``edgecnn predict MODEL /`` once walked the whole disk: folders have the patterns' cap."""
    root, _, _ = mixed
    monkeypatch.setattr(walk, "MAX_SCANNED", 100)
    result = invoke("predict", MODEL, root)
    assert_one_line_error(
        result, f"{root}: scanned 100 files and folders and more remain: name a narrower folder"
    )
    assert result.stdout == ""


def test_one_folder_over_the_cap_stops_though_it_holds_no_folder(tmp_path, monkeypatch):
    for i in range(12):
        (tmp_path / f"{i:02d}.png").write_bytes(b"")
    monkeypatch.setattr(walk, "MAX_SCANNED", 11)
    for argument in (tmp_path, tmp_path / "*.png"):
        result = invoke("predict", MODEL, argument)
        assert_one_line_error(result, "more than 11 files" if "*" in str(argument) else "11 files")
        assert result.stdout == ""
    monkeypatch.setattr(walk, "MAX_SCANNED", 12)  # the cap itself is allowed
    assert len(walk.folder_files(str(tmp_path), lambda name: True)[0]) == 12
    assert len(list(walk.pattern_matches(str(tmp_path / "*.png")))) == 12


def test_entries_are_counted_as_they_are_read_not_after_the_folder_is_sorted(monkeypatch):
    """A folder of millions of entries was read whole, and sorted, before any was counted."""
    endless = os.path.join(os.sep, "endless")
    scandir = os.scandir

    class Endless:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def __iter__(self):
            for i in range(10_000):
                yield os.path.join(endless, f"{i}.png")  # never looked at: counted first
            raise AssertionError("the whole folder was read before any entry was counted")

    def fake_scandir(path):
        return Endless() if str(path).rstrip(os.sep) == endless else scandir(path)

    monkeypatch.setattr(os, "scandir", fake_scandir)
    with pytest.raises(InputError, match="scanned 100 files"):
        walk.folder_files(endless, lambda name: True, limit=100)
    with pytest.raises(InputError, match="more than 100 files"):
        list(walk.pattern_matches(os.path.join(endless, "*.png"), limit=100))


def test_pattern_semantics_are_globs_without_links(tmp_path):
    """Matches as ``glob.glob(recursive=True)`` gives them, on a tree without links."""
    import glob

    for name in ("a/1.png", "a/b/2.png", "a/b/c/3.png", ".h/x/4.png", "a/.hid/5.png",
                 "a/.6.png", "d/7.PNG", "d/8.txt", "9.png", "a/b/c/10.jpg"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    patterns = ["**/*.png", "*/*.png", "a/**/*.png", "a/**/c/*", "**/.*", "a/.*", "*/",
                "**/.h*/**/*.png", ".h/**/*.png", "**/[0-9].png", "**/b", "d/*.?NG",
                "a/**/b/c/*.png", "*.png", "**/**/*.png", "a/*/c/*.jpg", "nothing/*"]  # fmt: skip
    cwd = os.getcwd()
    os.chdir(tmp_path)  # relative patterns give relative paths
    try:
        for pattern in [*patterns, *(str(tmp_path / p) for p in patterns)]:
            matches = set(glob.glob(pattern, recursive=True))  # glob may give one twice
            expected = sorted(matches, key=lambda p: p.split(os.sep))
            expected = [p.rstrip(os.sep) for p in expected]
            assert list(walk.pattern_matches(pattern)) == expected, pattern
    finally:
        os.chdir(cwd)


def test_names_with_bidi_or_zero_width_characters_are_escaped_in_text(test_images, tmp_path):
    """A name holding U+202E shows the rest of its line right to left: as if another file
    had been classified, or another label given."""
    folder = tmp_path / "names"
    folder.mkdir()
    tricky = {
        "evil\u202egnp.png": "evil\\u202egnp.png",
        "zero\u200bwidth\ufeff.png": "zero\\u200bwidth\\ufeff.png",
        "iso\u2066late\u2069\u200e\u061c.png": "iso\\u2066late\\u2069\\u200e\\u061c.png",
    }
    for name in tricky:
        Image.fromarray(test_images.x[0]).save(folder / name)
    result = invoke("predict", MODEL, folder)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    shown = [line.split()[0] for line in lines]
    assert shown == [str(folder) + os.sep + tricky[name] for name in sorted(tricky)]
    assert len({line.index("%") for line in lines}) == 1  # aligned by what is shown
    assert all(ch.isprintable() for ch in result.stdout.replace("\n", ""))
    rows = jsonl(invoke("predict", MODEL, folder, "--jsonl"))  # JSON keeps the real names
    assert [r["file"] for r in rows] == [str(folder / name) for name in sorted(tricky)]


def test_an_error_line_escapes_bidi_and_zero_width_characters(tmp_path):
    """The one error line names a file as the text output does: U+202E cannot reorder it."""
    missing = tmp_path / "evil\u202egnp.png\u200b"
    result = invoke("predict", MODEL, missing)
    assert_one_line_error(result)
    assert "evil\\u202egnp.png\\u200b" in result.stderr
    assert all(ch.isprintable() for ch in result.stderr.replace("\n", ""))
