"""The course (examples/, docs/course.md): every lesson runs with small settings and asserts
what it teaches; each exercise's check passes the shipped solution, fails a wrong answer and
calls an untouched exercise not done."""
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinylm.boards import emulate_riscv, emulate_rp2040

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
EXERCISES = EXAMPLES / "exercises"
LESSONS = sorted(EXAMPLES.glob("[0-9][0-9]_*.py"))
EXERCISE_FILES = sorted(EXERCISES.glob("[0-9][0-9]_*.py"))
# Lessons with a part that needs emulator tools: without them the lesson skips that part.
EMULATORS = {"08_c_runtime_and_mcu": [emulate_rp2040],
             "09_choosing_an_architecture": [emulate_rp2040, emulate_riscv]}
LONGEST_LESSON = 150

sys.path.insert(0, str(EXERCISES))
from exercise import load  # noqa: E402  (examples/exercises/exercise.py)


def run_lesson(path, out, **env):
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600, env=dict(os.environ, TINYLM_COURSE_QUICK="1",
                                                TINYLM_COURSE_OUT=str(out), **env))


@pytest.fixture(scope="module")
def course_out(tmp_path_factory):
    """One folder for all lessons, so that the story model is trained once."""
    return tmp_path_factory.mktemp("course")


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_lesson_runs_and_its_assertions_hold(lesson, course_out):
    result = run_lesson(lesson, course_out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    pictures = [line.split()[1] for line in result.stdout.splitlines()
                if line.startswith("[picture] /")]
    assert all(Path(picture).is_file() for picture in pictures)
    missing = [reason for tools in EMULATORS.get(lesson.stem, [])
               if (reason := tools.missing_tools())]
    if missing:
        assert "skipped" in result.stdout
        pytest.skip(f"the lesson ran, but skipped its emulator part: {'; '.join(missing)}")


def test_a_lesson_without_matplotlib_says_the_picture_was_not_drawn(tmp_path):
    blocker = tmp_path / "blocker" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('hidden for the test')\n")
    path = os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])
    result = run_lesson(EXAMPLES / "01_bytes_and_bpe.py", tmp_path, PYTHONPATH=path)
    assert result.returncode == 0, result.stderr
    assert "[picture] 01_merge_tree.png not drawn: matplotlib is not installed" in result.stdout


def test_lessons_are_short_notebooks_listed_in_the_index():
    index = (ROOT / "docs" / "course.md").read_text()
    assert len(LESSONS) >= 9 and len(EXERCISE_FILES) == len(LESSONS)
    for lesson, exercise in zip(LESSONS, EXERCISE_FILES):
        text = lesson.read_text()
        assert len(text.splitlines()) <= LONGEST_LESSON, lesson.name
        assert text.startswith("# %% [markdown]\n# # Lesson ") and "\n# %%\n" in text
        assert lesson.stem[:2] == exercise.stem[:2]
        assert f"examples/exercises/{exercise.name}" in text
        assert f"examples/{lesson.name}" in index and f"exercises/{exercise.name}" in index


# ---- exercises -------------------------------------------------------------------------------

def functions(module, check):
    """The functions that `check` takes, by the names of its parameters, from `module`."""
    return [getattr(module, name) for name in inspect.signature(check).parameters]


def solution_of(path):
    return load(EXERCISES / "solutions" / path.name)


@pytest.mark.parametrize("exercise", EXERCISE_FILES, ids=lambda path: path.stem)
def test_the_solution_passes_the_check(exercise):
    module = load(exercise)
    module.check(*functions(solution_of(exercise), module.check))


@pytest.mark.parametrize("exercise", EXERCISE_FILES, ids=lambda path: path.stem)
def test_an_untouched_exercise_is_not_done(exercise):
    module = load(exercise)
    with pytest.raises(NotImplementedError):
        module.check(*functions(module, module.check))


def leftmost_pair_first(chunk, merges):      # ignores the order the merges were learned in
    rank = {pair: i for i, pair in enumerate(merges)}
    ids = list(chunk)
    while True:
        pairs = [i for i in range(len(ids) - 1) if (ids[i], ids[i + 1]) in rank]
        if not pairs:
            return ids
        i = pairs[0]
        ids[i:i + 2] = [256 + rank[ids[i], ids[i + 1]]]


def swiglu_sigmoid_as_constant(d_out, a, b):
    sigmoid = 1 / (1 + np.exp(-a))
    return d_out * b * sigmoid, d_out * a * sigmoid


def adamw_without_bias_correction(p, g, m, v, t, lr, beta1=0.9, beta2=0.95, eps=1e-8,
                                  weight_decay=0.1):
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g * g
    if p.ndim == 2:
        p *= 1 - lr * weight_decay
    p -= lr * m / (np.sqrt(v) + eps)


def top_p_without_the_crossing_token(probs, top_p):
    order = np.argsort(-probs, kind="stable")
    kept = np.zeros_like(probs)
    keep = order[:max(1, int(np.sum(np.cumsum(probs[order]) <= top_p)))]
    kept[keep] = probs[keep]
    return kept / kept.sum()


def kl_of_the_renormalized_top_k(teacher_ids, teacher_probs, student_logits):
    s = np.exp(student_logits - student_logits.max())
    s = s[teacher_ids] / s[teacher_ids].sum()
    q = teacher_probs / teacher_probs.sum()
    return float(np.sum(q * np.log(q / s)))


def quantize_to_128_steps(w, bits):
    qmax = 2 ** (bits - 1)
    s = np.abs(w).max() / qmax
    return np.clip(np.round(w / s), -qmax, qmax - 1), s


def xorshift_without_64_bits(seed, n):
    x, numbers = seed + 0x9E3779B97F4A7C15, []
    for _ in range(n):
        x ^= x >> 12
        x ^= x << 25
        x ^= x >> 27
        numbers.append((x * 0x2545F4914F6CDD1D) >> 32 & 0xFFFFFFFF)
    return numbers


def macs_without_grouped_queries(c):
    q = c.n_heads * c.head_dim
    return c.n_layers * (4 * c.dim * q + 3 * c.dim * c.hidden_dim) + c.vocab_size * c.dim


WRONG = {  # exercise -> a plausible mistake, which its check must catch
    "01_encode": leftmost_pair_first,
    "02_swiglu_backward": swiglu_sigmoid_as_constant,
    "03_sliding_window": lambda q, k, v, window: load(
        EXERCISES / "solutions" / "03_sliding_window.py").sliding_window_attention(
            q, k, v, window + 1),                # one position too many
    "04_adamw": adamw_without_bias_correction,
    "05_top_p": top_p_without_the_crossing_token,
    "06_kl_with_rest": kl_of_the_renormalized_top_k,
    "07_quantize_group": quantize_to_128_steps,
    "08_xorshift": xorshift_without_64_bits,
    "09_macs": macs_without_grouped_queries,
}


@pytest.mark.parametrize("exercise", EXERCISE_FILES, ids=lambda path: path.stem)
def test_a_wrong_answer_fails_the_check(exercise):
    with pytest.raises(AssertionError):
        load(exercise).check(WRONG[exercise.stem])


def test_an_exercise_run_as_a_script_says_how_it_stands():
    script = EXERCISES / "05_top_p.py"
    untouched = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert untouched.returncode == 1 and untouched.stderr.startswith("not done yet: fill in")
    solved = subprocess.run([sys.executable, str(script), "--solution"], capture_output=True,
                            text=True)
    assert solved.returncode == 0 and solved.stdout == "OK: top_p_filter passed the check\n"
