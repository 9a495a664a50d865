"""Lesson 09's prose against its committed outputs, and the facts its exercise answers state.

The committed notebook is a laptop-profile execution; a number quoted in a markdown cell must
appear in the committed output of the code cell it interprets (or of another lesson's cell it
cites), so a re-execution that moves a number fails here until the sentence is updated.
"""

from __future__ import annotations

import contextlib
import io
import re

import pytest
import torch
from notebook_cells import cells, output_text

LESSON = "09_vit_vs_resnet"

# markdown cell -> the code cells (notebook, cell id) whose committed outputs its numbers quote
QUOTES = {
    "conditions-after": [(LESSON, "cell-09")],
    "check-after": [(LESSON, "check-code")],
    "drift-after": [(LESSON, "drift-code"), (LESSON, "check-code")],
    "noise-after": [(LESSON, "noise-code"), ("11_depth_and_seeds", "cell-14")],
    "cell-16": [(LESSON, "cell-13"), (LESSON, "cell-15"), (LESSON, "cell-11"), (LESSON, "cell-09"), (LESSON, "noise-code")],
    "wcgw-md": [(LESSON, "cell-13")],
    "cell-18": [(LESSON, "cell-17")],
    "exercises": [(LESSON, "cell-11"), (LESSON, "cell-09")],
    "takeaway": [(LESSON, "cell-13"), (LESSON, "noise-code")],
}
# Public reference points (cell-05's table, not ours) that the prose may repeat.
REFERENCES = {"93.64", "94.77", "75.6"}
# Numbers the prose computes from quoted ones: (text, the quoted inputs, how the text follows from them).
DERIVED = {
    "conditions-after": [("1.8", ("714,370", "701,466"), lambda a, b: f"{100 * (a / b - 1):.1f}"),
                         ("1.5", ("308", "209"), lambda a, b: f"{a / b:.1f}")],
    "exercises": [("1.5", ("308", "209"), lambda a, b: f"{a / b:.1f}"),
                  ("0.02", ("2.1674", "2.1474"), lambda a, b: f"{a - b:.2f}")],
}
# Numbers that are not results of the execution, with the reason.
NOT_RESULTS = {"exercises": {"489,565": "exercise 1's answer: test_exercise_1_answer_states_what_its_code_prints",
                             "0.03": "a learning rate to try", "0.01": "a learning rate to try"}}

NUMBER = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|(?<![\w.,])\d+\.\d+(?![\d])")
FENCE = re.compile(r"```.*?```", re.S)


def appears(number: str, text: str) -> bool:
    return re.search(r"(?<![\d.,])" + re.escape(number) + r"(?![\d])", text) is not None


@pytest.mark.parametrize("markdown_id", list(QUOTES))
def test_every_number_in_the_prose_is_in_the_output_it_interprets(markdown_id):
    lesson = cells(LESSON)
    prose = FENCE.sub("", lesson[markdown_id].source)  # code in an answer is not a quoted result
    sources = {}
    for notebook, cell_id in QUOTES[markdown_id]:
        sources.setdefault(notebook, cells(notebook) if notebook != LESSON else lesson)
        assert cell_id in sources[notebook], f"{notebook} has no cell {cell_id!r}: update QUOTES"
    outputs = "\n".join(output_text(sources[nb][cell_id]) for nb, cell_id in QUOTES[markdown_id])
    derived = {text for text, _, _ in DERIVED.get(markdown_id, [])}
    skipped = REFERENCES | derived | set(NOT_RESULTS.get(markdown_id, {}))
    missing = [n for n in NUMBER.findall(prose) if n not in skipped and not appears(n, outputs)]
    assert not missing, (f"{LESSON} cell {markdown_id!r} quotes {missing}, not in the committed outputs of "
                         f"{QUOTES[markdown_id]}: re-read the outputs and update the sentence")
    for text, inputs, formula in DERIVED.get(markdown_id, []):
        for value in inputs:
            assert appears(value, outputs), f"{markdown_id!r} derives {text} from {value}, which the outputs lack"
        computed = formula(*(float(v.replace(",", "")) for v in inputs))
        assert computed == text and appears(text, prose), f"{markdown_id!r}: {inputs} give {computed}, prose says {text}"


def test_the_prose_states_once_which_execution_produced_it():
    prose = "\n".join(c.source for c in cells(LESSON).values() if c.cell_type == "markdown")
    assert prose.count("laptop profile**") == 1, "the top of the lesson should name the execution once"
    assert "committed laptop-profile execution" not in prose, "the execution is named once, at the top"


def exercise_code(number: int) -> str:
    """The code block of exercise ``number``'s answer."""
    text = cells(LESSON)["exercises"].source
    starts = [m.start() for m in re.finditer(r"^\d+\. \*\*", text, re.M)]
    block = text[starts[number - 1]:(starts[number] if number < len(starts) else len(text))]
    code = re.search(r"```python\n(.*?)```", block, re.S)
    assert code, f"exercise {number} has no code in its answer"
    return "\n".join(line[3:] if line.startswith("   ") else line for line in code.group(1).splitlines())


def run_printing(code: str, namespace: dict) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, namespace)
    return out.getvalue()


def test_exercise_1_answer_states_what_its_code_prints():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from course_utils.models import count_parameters, create_model
    from course_utils.profiles import profile_config
    from course_utils.timing import train_flops_per_image

    vit_sgd = profile_config("laptop").replace(model="vit_tiny", width=40, init="trunc_normal")
    printed = run_printing(exercise_code(1), {"VIT_SGD": vit_sgd, "train_flops_per_image": train_flops_per_image,
                                              "count_parameters": count_parameters, "create_model": create_model,
                                              "sdpa_kernel": sdpa_kernel, "SDPBackend": SDPBackend})
    rows = {int(w): (int(f), p) for w, f, p in re.findall(r"^(\d+) (\d+) MFLOP ([\d,]+) parameters$", printed, re.M)}
    assert len(rows) > 2, printed
    resnet = train_flops_per_image(profile_config("laptop").replace(model="resnet18", width=16)) / 1e6
    closest = min(rows, key=lambda w: abs(rows[w][0] - resnet))
    answer = cells(LESSON)["exercises"].source
    assert f"{round(resnet)} MFLOP" in answer
    assert f"Width {closest}: {rows[closest][0]} MFLOP per training image, {rows[closest][1]} parameters" in answer, printed
    assert f"width {closest - 1}: {rows[closest - 1][0]} MFLOP, width {closest + 1}: {rows[closest + 1][0]}" in answer
    fewer = 1 - int(rows[closest][1].replace(",", "")) / 701_466  # ResNet-18 at width 16
    assert f"{100 * fewer:.0f}% fewer parameters" in answer


def test_exercise_3_answer_runs_and_positions_are_all_a_vit_knows_of_the_layout(cifar10):
    from course_utils.loader import normalized_batches
    from course_utils.models import create_model

    [(images, _)], _ = normalized_batches(cifar10, 8)
    torch.manual_seed(0)
    printed = run_printing(exercise_code(3), {"create_model": create_model, "torch": torch, "images": images})
    with_positions = float(printed.split("with positions:")[1])
    assert with_positions > 1e-4, f"shuffling the patches should move the logits while positions exist: {printed}"
