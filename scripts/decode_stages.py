"""Where one remac-decode spends its time and memory, stage by stage, in one process.

    python -m scripts.decode_stages STREAM.rmc -o OUT.png [other remac-decode options]

Runs the command line as remac-decode's entry point does (ground_decoder.entry's environment), with
timers wrapped around its stages (imports, entropy decoding, model load, trunk, the rest of
synthesis, colour conversion, PNG encoding, writing) and a thread sampling the process's RSS every
5 ms: -> each stage's wall seconds and the peak RSS seen while it ran. Stages that run at once (a
colour stream's planes) are charged to whichever started last. A measuring tool, not a benchmark:
compare trees with `python -m scripts.bench_decode --whole OLD`.
"""
import os
import sys
import threading
import time

T0 = time.perf_counter()
PAGE = os.sysconf("SC_PAGE_SIZE")


class Stages:
    def __init__(self):
        self.stage, self.since, self.time, self.peak = "start-up", T0, {}, {}
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while True:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * PAGE / 2 ** 20
            self.peak[self.stage] = max(self.peak.get(self.stage, 0), rss)
            time.sleep(0.005)

    def mark(self, name: str):
        now = time.perf_counter()
        self.time[self.stage] = self.time.get(self.stage, 0) + now - self.since
        self.stage, self.since = name, now

    def wrap(self, owner, attr: str, name: str):
        inner = getattr(owner, attr)

        def timed(*a, **k):
            before = self.stage
            self.mark(name)
            try:
                return inner(*a, **k)
            finally:
                self.mark(before)
        setattr(owner, attr, timed)


def main(argv):
    stages = Stages()
    from remac.ground_decoder.entry import set_environment
    set_environment()
    stages.mark("import the command line")
    from remac.ground_decoder import api, cli
    stages.mark("import torch and the decoder")
    from remac.ground_decoder import decode
    from remac.models import ground
    stages.mark("other")
    stages.wrap(decode, "entropy_decode", "entropy decoding")
    stages.wrap(decode, "ground_model", "model load")
    stages.wrap(decode, "render", "synthesis: prepare, pass 2 (1/16 -> 1)")
    stages.wrap(ground.GroundModel, "trunk", "synthesis: trunk (1/16)")
    stages.wrap(decode, "colour_samples", "colour conversion")
    stages.wrap(api, "image_bytes", "PNG encoding")
    stages.wrap(api, "atomic_write", "writing")
    try:
        cli.decode_main(argv, prog_name="remac-decode")
    except SystemExit as exc:
        if exc.code:
            raise
    stages.mark("end")
    import resource
    print(f"{'stage':42s} {'wall s':>7s} {'peak RSS MiB':>13s}")
    for name, seconds in stages.time.items():
        print(f"{name:42s} {seconds:7.3f} {stages.peak.get(name, 0):13.0f}")
    print(f"{'whole process (from the interpreter start)':42s} {time.perf_counter() - T0:7.3f} "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:13.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])
