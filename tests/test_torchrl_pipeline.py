"""The README's TorchRL pipeline, executed as written (issue 14, item 8): the block after the marker
``<!-- torchrl-pipeline`` in README.md, in a fresh namespace, one torch thread."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import re  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_pipeline() -> str:
    text = README.read_text()
    match = re.search(r"<!-- torchrl-pipeline[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its torchrl-pipeline block"
    return match.group(1)


def test_the_readme_pipeline_runs_as_written_and_trains_each_module():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        namespace = {"__name__": "readme_pipeline"}
        exec(compile(readme_pipeline(), str(README), "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    ns = namespace
    assert len(ns["buffer"]) == ns["total_frames"]
    for loss_td in (ns["model_td"], ns["actor_td"], ns["value_td"]):
        assert all(torch.isfinite(v).all() for k, v in loss_td.items() if k.startswith("loss_"))
    for module, optimizer in ns["optimizers"]:  # every module took optimizer steps
        steps = {int(state["step"]) for state in optimizer.state.values()}
        assert steps == {(ns["total_frames"] // ns["frames_per_batch"]) * ns["updates_per_batch"]}, module
