"""Choose the float arithmetic of CPU-heavy torch work by this machine, not by habit.

bf16 autocast is 2-4.5x faster than fp32 on Xeons with AMX and 13-25x *slower* on CPUs without
native bf16 (measured, ../shared/DESIGN.md), and the machines change between working periods. So:

    training      time a few real steps in each candidate and keep the fastest (choose_by_timing)
    decoding      decide from the CPU flags alone (decode_precision): timing noise must never
                  change which arithmetic, hence which pixels, a machine decodes with

    with autocast("bf16"): ...        # or autocast("fp32"): a no-op context
"""
import contextlib
import statistics
import time

import torch

CANDIDATES = ("fp32", "bf16")


def cpu_info() -> dict:
    """{"model": CPU model name, "flags": set of /proc/cpuinfo flags} (empty where unreadable)."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "flags": flags}


def autocast(precision: str, device_type: str = "cpu"):
    """The autocast context for `precision` ("fp32": none)."""
    if precision not in CANDIDATES:
        raise ValueError(f"precision must be one of {CANDIDATES}, not {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16)


def time_step(step, precision: str, warmup: int = 2, repeats: int = 3) -> float:
    """Median seconds of `step(precision)` over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        step(precision)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step(precision)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def choose_by_timing(step, candidates=CANDIDATES, **kw):
    """-> (fastest precision, {precision: s/step}). `step(precision)` runs one representative
    unit of work (a training step without the optimizer update, say)."""
    timings = {p: time_step(step, p, **kw) for p in candidates}
    return min(timings, key=timings.get), timings


def decode_precision(flags=None) -> str:
    """Float arithmetic for the ground decoder on this CPU: bf16 only with AMX (where it is several
    times faster), else fp32. Depends on the CPU flags alone, so a machine always decodes a stream
    to the same pixels."""
    flags = cpu_info()["flags"] if flags is None else flags
    return "bf16" if "amx_bf16" in flags else "fp32"
