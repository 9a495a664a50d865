"""The lessons say what their committed outputs show.

Each number a lesson's prose quotes must be printed by the code cell it interprets (commas are
ignored, so "1,035" matches a printed 1035); the lessons describe the course as it is, without its
history, without how it is built and tested, and without unfilled placeholders (every lesson); lesson 01's guess about confused classes is answered with lesson 08's committed counts;
and lesson 06's time estimates for the T4 and the A100 are the ones its own settings give.
"""

from __future__ import annotations

import re

import pytest

from course_utils.course import NOTEBOOKS_DIR
from notebook_cells import cells, output_text

# lesson -> {markdown cell id: (code cell ids whose outputs it interprets, the strings it quotes)}
QUOTES = {
    "01_data_and_split": {
        "b01": (["c10"], ["7,972"]),
        "b02": (["c12"], ["963", "1,035", "26.8"]),
        "b03": (["c14", "b07-sizes"], ["40", "60", "6.7"]),
        "b04": (["c17"], ["(0.492, 0.482, 0.447)", "(0.245, 0.243, 0.261)"]),
        "b05": (["c19"], ["(0.2006, 0.1987, 0.2008)", "(0.2023, 0.1994, 0.2010)", "1.2131", "1.2974"]),
        "b06": (["c24"], ["(0.2471, 0.2440, 0.2625)", "(0.2468, 0.2450, 0.2617)", "0.2006", "0.2034", "0.1993",
                          "0.2003", "0.2011", "0.2021"]),
        "c22": (["c21"], ["0.0002", "0.0001"]),
        "b07-stratified-answer": (["b07-stratified"], ["189", "49,735", "963", "1,035"]),
        "b07-colour-answer": (["b07-colour"], ["0.5268, 0.5615, 0.5902", "0.4899, 0.5248, 0.5540", "+0.063",
                                               "+0.064", "0.420", "0.124", "0.560"]),
        "b07-sizes-answer": (["b07-sizes"], ["4 to 14", "10 ± 3.0", "30%", "40 to 60", "50 ± 6.7", "13%",
                                             "87 to 115", "100 ± 9.4", "9%", "963 to 1035", "1,000 ± 26.8", "3%"]),
        "b07-stratified-stats-answer": (["b07-stratified-stats"], ["0.0013", "0.4458", "0.4471", "0.0002"]),
    },
    "02_augmentation": {
        "c15": (["c13"], ["1.16", "1.44", "7,634", "4,914", "7.42x", "56,608", "5.02x", "16.04x"]),
        "aug-fast-reading": (["aug-fast-runs"], ["20.6", "21.3", "99.99", "96.98", "97.04", "90.24", "90.11",
                                                 "87.62", "87.65", "+2.54 ± 0.08", "31.7", "89.52", "89.54",
                                                 "87.41", "87.05", "+2.30 ± 0.19", "88.42", "85.00"]),
    },
    "03_resnet": {
        "c38-flops-answer": (["c38-flops"], ["268.4 M", "24.2%", "4.7%", "18.8%", "75.1%", "302.0 M", "27.2%", "0.3%",
                                             "1.3%", "1.11 GFLOPs"]),
        "c38-option-a-answer": (["c38-option-a"], ["(2, 128, 16, 16)", "8,448", "33,280", "132,096", "173,824", "1.6%",
                                                   "11,173,962"]),
        "c38-batch-two-answer": (["c38-batch-two"], ["100.0%", "0.9998", "1.0000", "2.7%", "0.1927"]),
        "deg-reading": (["deg-train", "deg-table"], ["81", "241", "83.30", "75.84", "54.80", "54.78",
                                                     "+24.78 ± 3.72", "6.7", "82.80", "75.90", "59.40", "58.90",
                                                     "+7.12 ± 0.66", "55.38", "53.30", "47.60", "46.84",
                                                     "17.66 ± 3.06", "5.8"]),
        "crossover-reading": (["crossover-runs"], ["19.46", "18.83", "22.19", "21.08", "2.49 ± 0.24", "10.6",
                                                   "1.87 ± 0.17"]),
        "c37": (["c36"], ["478", "52", "9.1", "841"]),
    },
    "06_lr_sensitivity": {
        "wd-fast-runs-md": (["wd-pull"], ["0.923", "15.65", "5.06", "0.00638"]),
        "wd-fast-reading": (["wd-pull", "wd-fast-runs", "wd-fast-figure"], ["20.0", "21.3", "90.24", "90.11", "88.95", "88.89",
                                                                 "+1.25 ± 0.03", "35.9", "89.52", "89.54", "88.50",
                                                                 "88.37", "+1.09 ± 0.07", "14.6", "96.98", "97.04",
                                                                 "96.31", "96.21", "+3.89", "+2.18", "+0.78", "+0.96",
                                                                 "0.08", "5.06", "15.65"]),
    },
    "07_calibration": {
        "overfit-read": (["overfit-train", "overfit-table"], ["2.0 to 2.2", "76.70%", "67.25%", "54.60%", "50.85%",
                                                             "66.66%", "62.35%", "12.06", "11.50", "12.12%",
                                                             "6.74 ± 0.47", "14.3", "5.85%", "4.29%", "54.20%",
                                                             "49.75%", "+5.58", "1.136", "1.074", "1.621", "1.513",
                                                             "+0.44 ± 0.69", "0.6", "2.53%", "3.66%"]),
    },
    "08_failure_analysis": {
        "label-errors-gallery-read": (["label-errors-gallery"], ["10 of the 18", "1.00"]),
        "probe-read": (["907f5370", "2c67a49e"], ["48.5 ± 1.2", "13.8 ± 0.9", "+34.8 ± 1.3", "3.5 ± 2.6",
                                                  "15.5 ± 2.8", "58.0 ± 3.6", "1.9 ± 0.6"]),
    },
    "10_cifar100": {
        "results-read": (["results"], ["27.50 ± 0.50", "45.35 ± 1.90", "+3.43 ± 0.55", "+6.25 ± 1.90", "68.7", "59.7"]),
        "per-class-read": (["per-class-plot"], ["0.0", "0.2"]),
        "skewed-read": (["skewed"], ["68.41", "37.28", "60.99", "51.45"]),
    },
    "11_depth_and_seeds": {
        "table-after": (["cell-11", "cell-10"], ["100.00%", "36.80 ± 0.69%", "34.67 ± 0.47%", "35.63 ± 1.29%", "34.77 ± 0.43%",
                                      "33.00 ± 0.21%", "35.90 ± 0.87%", "1.53"]),
        "diff-after": (["diff-code", "cell-11"], ["2.13 ± 0.84", "2.6", "1.77 ± 0.48", "3.7", "1.17 ± 1.47", "0.8",
                                                  "1.13 ± 0.97", "1.2", "n/a", "1.53"]),
        "figure-after": (["cell-11", "cell-10"], ["1.8", "3.5", "6.0", "1.9", "3.3", "AMD EPYC", "100.00%"]),
        "cell-15": (["cell-14"], ["36.80%", "38.00%", "35.60%", "1.20", "0.69", "100.00%", "34.00", "35.50%", "0.75"]),
        "cell-20": (["cell-19", "cell-10"], ["+1.40", "3.40", "3.80", "+0.00", "0.98", "1.20", "2.29", "2.88"]),
        "budget-after": (["budget-code"], ["2.0", "0.6", "13,008", "5,584", "47"]),
        "cifar-depth-reading": (["cifar-depth-runs", "cifar-depth-figure"],
                                ["6.0", "6.3", "17.3", "19.0", "76.32", "76.70", "74.28", "75.00", "+1.87 ± 0.17", "11.0",
                                 "76.20", "76.39", "74.33", "74.94", "+1.66 ± 0.21", "7.9", "77.81", "78.92", "80.54",
                                 "81.17", "+2.49 ± 0.24", "75.47", "75.15", "71.36", "71.63", "epoch 5", "epoch 4",
                                 "epoch 7", "853,018", "269,722"]),
    },
    "12_training_fast": {
        "f37b2cbc": (["dd34dff5"], ["0.32", "0.21", "3.33", "620", "799", "201", "167", "1.61"]),
        "1e03ed4a": (["2f65b3b6"], ["14.1", "28.8"]),
        "muon-read": (["muon-run"], ["7.20", "9.52", "+8.21 ± 0.49", "16.8", "0.95", "30", "33", "25", "26", "43"]),
        "0ae39175": (["2f65b3b6"], ["90.78%", "90.85%", "90.82%", "89.52%", "89.54%", "89.53%", "20.8", "18.4", "14.4",
                                    "14.1", "10,000", "0.31", "0.29", "89.94%", "89.60%", "90.74%", "89.88%", "90.24%",
                                    "90.40%", "90.32%", "17.5", "17.3", "1.4", "1.0", "0.30", "90.80%", "90.88%",
                                    "90.84%", "25.9", "26.0", "90.93%", "90.99%", "90.96%", "28.1", "27.9", "90.88%",
                                    "90.91%", "90.90%", "28.6", "28.8", "1.1", "90.55%", "90.67%", "+0.12", "0.41",
                                    "88.97%", "88.84%", "98.18%", "98.86%"]),
    },
}
LESSONS = ["01_data_and_split", "03_resnet", "05_training", "06_lr_sensitivity"]
HISTORY = re.compile(r"issue \d|\breview\b|earlier (version|execution)|previous (version|execution)|used to print|"
                     r"seed's reference|in the committed laptop", re.IGNORECASE)

# How the course is built and tested belongs in docs/ (docs/setup.md, docs/machines.md), not in a lesson: CI, the
# test suite's files and functions, the build machines, how a size was piloted, upstream bug reports.
BUILD_TALK = re.compile(r"\bCI\b|(?i:\btests/|\btest_\w+\.py|\btest_[a-z0-9]+(?:_[a-z0-9]+){3,}|build machine|"
                        r"\bpilot(?:ed|ing|s)?\b|github\.com/pytorch/pytorch/issues|pytorch issue|shared with other jobs|"
                        r"crash(?:es|ed)? (?:in|with|on) (?:torch|pytorch) \d)")
# An unfilled answer or note: an all-caps name with an underscore (ANSWER_FLOPS), TODO, TBD, FIXME, XXX.
PLACEHOLDER = re.compile(r"\b(?:[A-Z]{2,}_[A-Z0-9_]{2,}|TODO|TBD|FIXME|XXX)\b")
ALL_LESSONS = sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def _markdown(lesson: str) -> str:
    return "\n".join(c.source for c in cells(lesson).values() if c.cell_type == "markdown")


def _without_code(markdown: str) -> str:
    """Markdown without its fenced blocks and `code spans`: names such as `COURSE_DATA_DIR` are code, not placeholders."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", markdown, flags=re.S))


def _without_commas(text: str) -> str:
    return text.replace(",", "")


@pytest.mark.parametrize("lesson,markdown_id", [(lesson, cid) for lesson, cells in QUOTES.items() for cid in cells])
def test_each_quoted_number_is_in_the_committed_output_it_interprets(lesson, markdown_id):
    lesson_cells = cells(lesson)
    code_ids, quoted = QUOTES[lesson][markdown_id]
    prose = lesson_cells[markdown_id].source
    printed = _without_commas("".join(output_text(lesson_cells[cid]) for cid in code_ids))
    assert printed, f"{lesson}: cells {code_ids} have no committed output"
    for number in quoted:
        assert number in prose, f"{lesson}, cell {markdown_id}: the prose no longer quotes {number!r}"
        assert _without_commas(number) in printed, (
            f"{lesson}, cell {markdown_id} quotes {number!r}, which cells {code_ids} do not print")


@pytest.mark.parametrize("lesson", ALL_LESSONS)
def test_lessons_describe_the_course_as_it_is(lesson):
    prose = _markdown(lesson)
    found = sorted({m.group(0) for m in HISTORY.finditer(prose)})
    assert not found, f"{lesson} refers to its own history or repeats the provenance note: {found}"


@pytest.mark.parametrize("lesson", ALL_LESSONS)
def test_lessons_do_not_talk_about_how_the_course_is_built_and_tested(lesson):
    found = sorted({m.group(0) for m in BUILD_TALK.finditer(_markdown(lesson))})
    assert not found, f"{lesson}'s prose talks about the course's building or tests (move it to docs/): {found}"


@pytest.mark.parametrize("lesson", ALL_LESSONS)
def test_lessons_have_no_placeholder_left(lesson):
    found = sorted({m.group(0) for m in PLACEHOLDER.finditer(_without_code(_markdown(lesson)))})
    assert not found, f"{lesson}'s prose still holds placeholders: {found}"


def test_the_prose_checks_catch_what_they_are_for():
    """Each pattern on a sentence it must flag, and on one it must let through."""
    assert BUILD_TALK.search("CI checks this cell") and BUILD_TALK.search("see tests/test_engine.py")
    assert BUILD_TALK.search("`test_killed_mid_epoch_and_resumed_equals_an_uninterrupted_run`")
    assert BUILD_TALK.search("on the course's build machine") and BUILD_TALK.search("about 3 idle minutes, piloted")
    assert BUILD_TALK.search("(PyTorch issue #183815)") and BUILD_TALK.search("crashes in torch 2.14.1")
    assert not BUILD_TALK.search("the test set's `test_per_class` and `test_exact` masks; a CIFAR image")
    assert PLACEHOLDER.search(_without_code("fourfold per stage. ANSWER_FLOPS")) and PLACEHOLDER.search("TODO: fill")
    assert not PLACEHOLDER.search(_without_code("set `COURSE_DATA_DIR`\n```python\nREPO_URL = 1\n```\nReLU, CIFAR-10"))


def test_lesson_01s_question_about_confused_classes_has_lesson_08s_answer():
    printed = output_text(cells("08_failure_analysis")["1e960c6e"])
    pairs = re.findall(r"(\w+) <-> (\w+)\s+(\d+) mistakes", printed)
    total = re.search(r"([\d,]+) mistakes; the pairs", printed).group(1)
    assert len(pairs) == 5, f"lesson 08 no longer prints its five most confused pairs: {printed!r}"
    answer = cells("01_data_and_split")["c07"].source
    assert f"{total} test mistakes" in answer, f"lesson 01 must quote lesson 08's {total} mistakes"
    for a, b, count in pairs:
        assert f"{a} ↔ {b}" in answer and count in answer, f"lesson 01 must name {a} ↔ {b} ({count}) as lesson 08 does"
    top = {frozenset((a, b)) for a, b, _ in pairs}
    for a, b in (("automobile", "truck"), ("deer", "horse")):
        assert frozenset((a, b)) not in top, f"lesson 08 now confuses {a} and {b} most: lesson 01's answer is wrong"


def _lesson_06_runs(profile: str):
    """The grid and overfitting configs lesson 06 trains in ``profile``, from its own SETTINGS cell."""
    from course_utils.config import CONFIG_DIR, load_config
    from course_utils.lr_sweeps import grid_config
    from course_utils.profiles import profile_config

    source = next(c.source for c in cells("06_lr_sensitivity").values() if "SETTINGS = {" in c.source)
    namespace = {"PROFILE": profile}
    exec(source, namespace)  # noqa: S102 - the lesson's own settings, a dict literal
    settings = namespace["SETTINGS"]
    base = profile_config(profile).replace(**settings["grid"])
    grid = [grid_config(base, lr, warmup == "warmup", seed)
            for warmup, seeds in settings["seeds"].items() for lr, n in seeds.items() for seed in range(n)]
    overfit = profile_config(profile).replace(keep_best=False, **settings["overfit"])
    pair = [config.replace(seed=seed) for config in (overfit, overfit.replace(augment=False, weight_decay=0.0))
            for seed in settings["overfit_seeds"]]
    mixed = [overfit.replace(seed=seed, **change) for change in ({"weight_decay": 0.0}, {"augment": False})
             for seed in settings["overfit_seeds"]]  # exercise 4's two arms, run on the page
    fast = settings["wd_fast"]  # section 5: the fast recipe without weight decay (the arm with it is lesson 12's)
    no_decay = [load_config(CONFIG_DIR / fast["config"], fast["overrides"]).replace(seed=seed, weight_decay=0.0)
                for seed in fast["seeds"]]
    return grid, pair + mixed, no_decay


def _shown(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{60 * hours:.0f} min"


@pytest.mark.parametrize("profile", ["gpu", "full"])
def test_lesson_06_states_the_gpu_estimates_its_own_settings_give(profile):
    from course_utils.timing import reference_gpu_hours, train_images

    grid, pair, no_decay = _lesson_06_runs(profile)
    hours = reference_gpu_hours(grid + pair + no_decay)  # the lr-1e4 runs stop within a few steps: not counted
    text = " ".join(cells("06_lr_sensitivity")["time-estimate"].source.replace("**", "").split())
    stated = f"{len(grid)} grid runs of {grid[0].epochs} epochs"
    assert stated in text, f"lesson 06 must say its {profile} profile trains {stated}"
    assert f"eight {pair[0].epochs}-epoch runs on {train_images(pair[0]):,}" in text, (
        f"lesson 06 misstates its {profile} profile's overfitting runs")
    assert f"two {no_decay[0].epochs}-epoch runs of {no_decay[0].model} without weight decay" in text and \
        len(no_decay) == 2, f"lesson 06 must name section 5's {profile} runs"
    for gpu in ("T4", "A100"):
        assert f"{_shown(hours[gpu])} on a{'n' if gpu == 'A100' else ''} {gpu}" in text, (
            f"lesson 06's {profile} estimate for the {gpu} must be {_shown(hours[gpu])} (from its SETTINGS)")
