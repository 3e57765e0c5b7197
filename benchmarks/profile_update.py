"""Where the time of one dreamer_trl update goes, and what acting on the largest share from outside gives.

    python benchmarks/profile_update.py --batch 16 --seq 50 --updates 3 --threads 2
    python benchmarks/profile_update.py --batch 16 --seq 50 --updates 3 --variants baseline subpixel_last compile

Manual timers, no library edits: the forward methods of the networks inside the world model, actor and
value are wrapped on their instances, and module backward hooks time the encoder's and decoder's
backward. Parts, for one ``DreamerUpdate.update`` (same operations, timed step by step):

- forward: encoder, RSSM observe loop, decoder, reward head + KL + likelihoods (rest of the model loss),
  imagination rollout (prior steps and actor calls), reward/value heads on the imagined states and the
  lambda-return, value loss;
- backward: decoder, encoder, rest of the world model (RSSM loop, reward head), actor (through the
  imagination), value; then the optimizers (clip + Adam).

``--variants`` times the whole update for modifications applied from the outside to a freshly built
model: ``subpixel_last`` (the decoder's last transposed conv, kernel 6 stride 2, as a 3x3 convolution to
four times the channels and a pixel shuffle) and ``compile`` (``torch.compile`` of the encoder and decoder
networks). Three earlier variants measured here were adopted by the library: channels-last convs, each
loss's backward right after its forward, and the decoder's first transposed conv as a GEMM
(benchmarks/RESULTS.md). ``--no_profile`` skips the table,
so that the printed peak RSS (VmHWM) belongs to the variants alone.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_update import make_ours, peak_rss_mb, synthetic_batch  # noqa: E402

import dreamer_trl as dt  # noqa: E402
from dreamer_trl.config import PRESETS  # noqa: E402
from dreamer_trl.training.update import carries_graph  # noqa: E402


class Timers:
    def __init__(self):
        self.acc: dict[str, float] = {}
        self.marks: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.acc[name] = self.acc.get(name, 0.0) + seconds

    def wrap(self, obj, method: str, name: str) -> None:
        """Times every call of ``obj.method`` (patched on the instance only)."""
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = inner(*args, **kwargs)
            self.add(name, time.perf_counter() - start)
            return out

        setattr(obj, method, timed)

    def backward_span(self, module: nn.Module, name: str, until_end_of: str | None = None) -> None:
        """Times the backward through ``module``: from the gradient of its output to that of its input.

        With ``until_end_of``, the span ends when that enclosing backward call returns (for modules whose
        input needs no gradient, e.g. the encoder on pixels)."""
        module.register_full_backward_pre_hook(lambda m, g: self.marks.__setitem__(name, time.perf_counter()))
        if until_end_of is None:
            module.register_full_backward_hook(
                lambda m, gi, go: self.add(name, time.perf_counter() - self.marks.pop(name)))
        else:
            self.__dict__.setdefault("ends", {})[until_end_of] = name


def profiled_update(upd: dt.DreamerUpdate, batch, timers: Timers) -> None:
    """``DreamerUpdate.update`` with a timer around each stage (see ``bench_update.ours_timed_update``)."""
    t = time.perf_counter
    start = t()
    data, total = batch, {}
    for phase in upd.phases:
        s = t()
        loss_td, data = phase.loss(data)
        timers.add(f"fwd/{phase.name}_loss", t() - s)
        total[phase.name] = (sum(v for k, v in loss_td.items() if k.startswith("loss_")), data)
    for i, (name, (loss, handed_on)) in enumerate(total.items()):
        phase = upd.phase(name)
        phase.optimizer.zero_grad(set_to_none=True)
        s = t()
        # the value loss may reuse the actor phase's value predictions (ActorLoss.share_value)
        loss.backward(inputs=phase.params, retain_graph=carries_graph(handed_on) and i + 1 < len(total))
        end = t()
        timers.add(f"bwd/{name}", end - s)
        span = timers.__dict__.get("ends", {}).get(name)
        if span and span in timers.marks:
            timers.add(span, end - timers.marks.pop(span))
    s = t()
    for phase in upd.phases:
        nn.utils.clip_grad_norm_(phase.params, phase.clip)
        phase.optimizer.step()
    timers.add("optimizer", t() - s)
    timers.add("total", t() - start)


def profile(args, cfg) -> dict[str, float]:
    upd, _ = make_ours(args, cfg)
    wm = upd.phase("model").loss.world_model
    parts = {"encoder": wm.encoder, "rssm": wm.rssm, "decoder": wm.decoder.net}
    timers = Timers()
    # The encoder's input (pixels) needs no gradient: its hook then fires at the output gradient, as intended.
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    timers.wrap(parts["encoder"], "forward", "fwd/encoder")
    timers.wrap(parts["rssm"], "observe", "fwd/rssm_observe")
    timers.wrap(parts["decoder"], "forward", "fwd/decoder")
    timers.wrap(parts["rssm"], "imagine", "fwd/imagination")
    timers.backward_span(parts["decoder"], "bwd/decoder")
    timers.backward_span(parts["encoder"], "bwd/encoder", until_end_of="model")
    batch = synthetic_batch(args.batch, args.seq, args.action_dim, args.obs, args.obs_dim, "cpu")
    for _ in range(args.warmup):
        upd.update(batch)
    runs = []
    for _ in range(args.updates):
        timers.acc = {}
        profiled_update(upd, batch, timers)
        runs.append(dict(timers.acc))
    med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
    wm_fwd_parts = ("fwd/encoder", "fwd/rssm_observe", "fwd/decoder")
    table = {
        "encoder fwd": med["fwd/encoder"],
        "RSSM observe loop fwd": med["fwd/rssm_observe"],
        "decoder fwd": med["fwd/decoder"],
        "reward head, KL, likelihoods fwd": med["fwd/model_loss"] - sum(med[k] for k in wm_fwd_parts),
        "imagination rollout fwd (prior + actor)": med["fwd/imagination"],
        "reward/value heads, lambda-return, value loss fwd":
            med["fwd/actor_loss"] - med["fwd/imagination"] + med["fwd/value_loss"],
        "decoder bwd": med.get("bwd/decoder", 0.0),
        "encoder bwd": med.get("bwd/encoder", 0.0),
        "RSSM loop, reward head bwd": med["bwd/model"] - med.get("bwd/decoder", 0.0) - med.get("bwd/encoder", 0.0),
        "actor bwd (through imagination)": med["bwd/actor"],
        "value bwd": med["bwd/value"],
        "optimizers (clip + Adam)": med["optimizer"],
    }
    table["total"] = med["total"]
    return table


class SubpixelDeconv(nn.Module):
    """A stride-2 ConvTranspose2d with an even kernel k, as a k/2 x k/2 convolution to 4x the channels and a
    pixel shuffle (the four output phases; same sums, same parameters)."""

    def __init__(self, conv: nn.ConvTranspose2d):
        super().__init__()
        assert conv.stride == (2, 2) and conv.kernel_size[0] % 2 == 0 and conv.padding == (0, 0)
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight                                     # (Cin, Cout, k, k), k = 2h
        cin, cout, k, _ = w.shape
        h = k // 2
        # output row 2m + p takes input row m - j through tap 2j + p: a correlation with the flipped taps
        w = w.reshape(cin, cout, h, 2, h, 2).flip(2, 4).permute(1, 3, 5, 0, 2, 4).reshape(4 * cout, cin, h, h)
        y = nn.functional.conv2d(x, w.contiguous(memory_format=torch.channels_last),
                                 self.conv.bias.repeat_interleave(4), padding=h - 1)
        return nn.functional.pixel_shuffle(y, 2)


def subpixel_last(upd) -> None:
    decoder = upd.phase("model").loss.world_model.decoder.net
    decoder.net[-1] = SubpixelDeconv(decoder.net[-1])


def subpixel_even(upd) -> None:
    """Both kernel-6 transposed convs (the last two) as convolution + pixel shuffle."""
    decoder = upd.phase("model").loss.world_model.decoder.net
    for i in (-3, -1):
        decoder.net[i] = SubpixelDeconv(decoder.net[i])


def compile_convs(upd) -> None:
    wm = upd.phase("model").loss.world_model
    wm.encoder.net.compile()
    wm.decoder.net.net.compile()


# Adopted in the library after measuring here: channels-last convs, backward right after each forward,
# the decoder's first transposed conv as a GEMM.
VARIANTS = {"baseline": lambda upd: None, "subpixel_last": subpixel_last, "subpixel_even": subpixel_even,
            "compile": compile_convs}


def time_variant(args, cfg, name: str) -> float:
    torch.manual_seed(0)
    upd, _ = make_ours(args, cfg)
    for part in name.split("+"):
        VARIANTS[part](upd)
    batch = synthetic_batch(args.batch, args.seq, args.action_dim, args.obs, args.obs_dim, "cpu")
    for _ in range(args.warmup):
        upd.update(batch)
    times = []
    for _ in range(args.updates):
        start = time.perf_counter()
        upd.update(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.add_argument("--obs", default="pixels", choices=["pixels", "observation"])
    p.add_argument("--obs_dim", type=int, default=5)
    p.add_argument("--action_dim", type=int, default=6)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=50)
    p.add_argument("--updates", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--variants", nargs="*", default=[], metavar="VARIANT",
                   help=f"also time the whole update under these outside modifications: {', '.join(VARIANTS)}; "
                        "combine with '+', e.g. subpixel_last+compile")
    p.add_argument("--no_profile", action="store_true", help="only time the variants")
    args = p.parse_args(argv)
    for name in args.variants:
        unknown = [part for part in name.split("+") if part not in VARIANTS]
        if unknown:
            p.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    args.device = "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = PRESETS[args.preset]()
    out = {}
    if not args.no_profile:
        out["profile"] = print_profile(args, cfg)
    if args.variants:
        times = {name: time_variant(args, cfg, name) for name in args.variants}
        base = times.get("baseline")
        for name, sec in times.items():
            rel = f" ({base / sec:.2f}x vs baseline)" if base else ""
            print(f"variant {name}: median {1e3 * sec:.0f} ms/update{rel}")
        out["variants"] = times
    print(f"peak RSS of this process: {peak_rss_mb():.0f} MB")
    return out


def print_profile(args, cfg) -> dict[str, float]:
    table = profile(args, cfg)
    total = table["total"]
    print(f"dreamer_trl update profile: preset={args.preset} obs={args.obs} batch={args.batch}x{args.seq} "
          f"threads={torch.get_num_threads()}, median of {args.updates} after {args.warmup} warm-up")
    print("| part | ms | share |\n|---|---|---|")
    for name, sec in table.items():
        print(f"| {name} | {1e3 * sec:.0f} | {100 * sec / total:.0f}% |")
    accounted = sum(v for k, v in table.items() if k != "total")
    print(f"(parts sum to {100 * accounted / total:.0f}% of the total)")
    return table


if __name__ == "__main__":
    main()
