"""What the CLIs share: one-line errors, atomic output, directory inputs, batch loops with a
progress bar, exit codes, -V/--version."""
import contextlib
import errno
import glob
import json
import math
import os
import stat
import sys
import tempfile
import time
from pathlib import Path

import click

from remac.bitstream.errors import RemacError

STDIO = "-"
TEMP_SUFFIX = ".part"           # atomic_write's temporary files: .NAME.XXXXXXXX.part beside NAME
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DAMAGED = 0, 1, 2, 3
EXIT_INTERRUPTED = 130          # 128 + SIGINT, as shells report a Ctrl-C


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one line, `PROG: error: MESSAGE (see PROG --help)` (exit 2), like every
    other error of these CLIs; click's own show() prints usage, hint and message on four lines.
    prog: the command's path (click's parser raises some errors, such as an option missing its
    value, before a context exists)."""

    def __init__(self, message, ctx, prog: str):
        super().__init__(message, ctx)
        self.prog = prog

    def show(self, file=None) -> None:
        click.echo(f"{self.prog}: error: {self.message} (see {self.prog} --help)", err=True)


@contextlib.contextmanager
def _usage_errors_on_one_line(prog: str):
    """Re-raise any click.UsageError inside as a _OneLineUsageError (same message, same context);
    a bare command name or group shows its help as click does."""
    try:
        yield
    except (_OneLineUsageError, click.exceptions.NoArgsIsHelpError):
        raise
    except click.UsageError as exc:
        raise _OneLineUsageError(exc.format_message(), exc.ctx, exc.ctx.command_path if exc.ctx else prog) from None


class _Conventions:
    """Mixin for click commands and groups: -h works like --help, every usage error (a bad option
    value, a missing argument, a click.UsageError the callback raises) is reported by
    _OneLineUsageError, and Ctrl-C exits 130 (128 + SIGINT) with one line."""

    def __init__(self, *args, context_settings=None, **kwargs):
        settings = {"help_option_names": ["-h", "--help"], **(context_settings or {})}
        super().__init__(*args, context_settings=settings, **kwargs)

    def make_context(self, info_name, args, parent=None, **extra):
        prog = f"{parent.command_path} {info_name}" if parent else info_name
        with _usage_errors_on_one_line(prog):
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx):
        with _usage_errors_on_one_line(ctx.command_path):
            try:
                return super().invoke(ctx)
            except KeyboardInterrupt:       # click's own would print "Aborted!" and exit 1 ("an input failed")
                click.echo(f"{ctx.command_path}: interrupted", err=True)
                sys.exit(EXIT_INTERRUPTED)


class Command(_Conventions, click.Command):
    """click.Command with -h and one-line usage errors: @click.command(cls=Command)."""


class Group(_Conventions, click.Group):
    """click.Group with -h and one-line usage errors, for itself and its subcommands."""
    command_class = Command


def expand_inputs(inputs, wanted, what: str) -> list:
    """-> [(input, folder relative to the directory it was found in, or an error)]. A directory is
    replaced by the files under it (recursively, sorted, hidden names skipped) that wanted(Path)
    accepts; one holding none is an input that fails ('no <what> in it')."""
    out = []
    for inp in inputs:
        root = Path(inp)
        if inp == STDIO or not root.is_dir():
            out.append((inp, ""))
            continue
        found = sorted(f for f in root.rglob("*") if wanted(f) and f.is_file()
                       and not any(part.startswith(".") for part in f.relative_to(root).parts))
        if not found:
            out.append((inp, RemacError(f"{inp}: is a directory with no {what} in it")))
        out += [(str(f), str(f.parent.relative_to(root))) for f in found]
    return out


def input_name(path: str) -> str:
    """How messages name an input: its path, or 'stdin' for '-'."""
    return "stdin" if path == STDIO else path


def read_input(path: str) -> bytes:
    if path == STDIO:
        if sys.stdin is None:           # started with stdin closed (<&-)
            raise RemacError("stdin: closed")
        return sys.stdin.buffer.read()
    p = Path(path)
    if p.is_dir():
        raise RemacError(f"{path}: is a directory")
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise RemacError(f"{path}: no such file") from None
    except OSError as exc:
        raise RemacError(f"{path}: cannot read ({exc.strerror})") from None


def _write_stdout(data: bytes) -> None:
    if sys.stdout is None:              # started with stdout closed (>&-)
        raise RemacError("stdout: cannot write (closed)")
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except OSError as exc:
        try:        # what is still buffered would fail again at exit, with a traceback-like report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise RemacError(f"stdout: cannot write ({exc.strerror or exc})") from None


def _write_into(path: str, data: bytes) -> None:
    """Write `data` into an existing file that is not a regular one (/dev/null, a FIFO)."""
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise RemacError(f"{path}: cannot write ({exc.strerror})") from None


def umask() -> int:
    """The process's umask (what new files and directories are created under)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str, data: bytes) -> None:
    """Write all of `data` or nothing: temp file beside the target (a symbolic link's target), fsync,
    rename. Devices and FIFOs (-o /dev/null) are written into, not replaced."""
    if path == STDIO:
        _write_stdout(data)
        return
    try:
        mode = os.stat(path).st_mode                # through links
    except OSError as exc:
        if exc.errno == errno.ELOOP:                # a link loop would otherwise be replaced by a plain file
            raise RemacError(f"{path}: cannot write ({exc.strerror})") from None
        mode = None                                 # missing (or a dangling link): created below
    if mode is not None and stat.S_ISDIR(mode):
        raise RemacError(f"{path}: output is a directory")
    if mode is not None and not stat.S_ISREG(mode):  # a device, FIFO or socket (or a link to one):
        _write_into(path, data)                       # a rename would replace it with a plain file
        return
    target = Path(os.path.realpath(path))           # a link to a file: replace the file, keep the link
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent or ".")
    except FileNotFoundError:
        raise RemacError(f"{path}: output directory {target.parent} does not exist") from None
    except OSError as exc:
        raise RemacError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        os.chmod(tmp, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        os.unlink(tmp)
        raise RemacError(f"{path}: cannot write ({exc.strerror})") from None
    except BaseException:
        os.unlink(tmp)
        raise


def temp_files(path: str) -> list:
    """The temporary files atomic_write(path, ...) calls left behind, killed before their rename."""
    target = Path(os.path.realpath(path))
    return sorted(target.parent.glob(glob.escape(f".{target.name}.") + "*" + TEMP_SUFFIX))


def remove_temp_files(jobs) -> None:
    """Remove what atomic_write left beside each job's output when its writer was killed."""
    for _, out in jobs:
        if isinstance(out, str) and out != STDIO:
            for tmp in temp_files(out):
                tmp.unlink(missing_ok=True)


def output_for(inp: str, output: str, n_inputs: int, suffix: str, subdir: str = "") -> str:
    """Where one input's result goes: -o file/-, -o directory (batch, or a name ending in '/'; an
    input found in a directory keeps its `subdir` under it), or beside the input."""
    if output is not None and n_inputs > 1 and output != STDIO and not Path(output).is_dir():
        raise RemacError(f"{output}: with several inputs, -o must be a directory (end it with / to create it)")
    if output is not None and (n_inputs == 1 and not Path(output).is_dir() and not output.endswith(os.sep)):
        return output
    stem = "stdin" if inp == STDIO else Path(inp).name.rsplit(".", 1)[0]
    folder = Path(output) / subdir if output is not None else (Path.cwd() if inp == STDIO else Path(inp).parent)
    return str(folder / (stem + suffix))


def check_writable(path: str) -> None:
    """RemacError, before any work, where atomic_write(path, ...) would fail for want of a directory
    to write into (same messages); devices, FIFOs and stdout are left to atomic_write."""
    if path == STDIO or (os.path.exists(path) and not os.path.isfile(path)):
        return
    folder = Path(os.path.realpath(path)).parent
    if not folder.exists():
        raise RemacError(f"{path}: output directory {folder} does not exist")
    if not folder.is_dir():
        raise RemacError(f"{path}: cannot write (Not a directory)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RemacError(f"{path}: cannot write (Permission denied)")


def plan_outputs(prog: str, inputs, output: str, suffix: str, as_json: bool, wanted=None, what: str = "") -> list:
    """-> [(input, output path or the error that input already has)]. Directory inputs are expanded
    to the files wanted(Path) accepts (mirrored into -o DIR); -o DIR/ is created if missing. A
    missing input or an output that cannot be written fails here, before any model is loaded.
    Usage error (exit 2) for '-o -' with several inputs or with --json (stdout carries the data);
    exit 1 with one line if -o cannot serve these inputs."""
    expanded = expand_inputs(inputs, wanted or (lambda p: True), what or "files")
    if output == STDIO and len(expanded) > 1:
        raise click.UsageError("-o - takes a single input")
    if output == STDIO and as_json:
        raise click.UsageError("--json needs stdout; use -o FILE with --json")
    try:
        if output not in (None, STDIO) and output.endswith(os.sep):
            _mkdir(output)
        jobs = []
        for inp, sub in expanded:
            if isinstance(sub, RemacError):
                jobs.append((inp, sub))
                continue
            if inp != STDIO and not os.path.exists(inp):
                jobs.append((inp, RemacError(f"{inp}: no such file")))
                continue
            out = output_for(inp, output, len(expanded), suffix, sub)
            if _same_file(inp, out):
                jobs.append((inp, RemacError(f"{out}: output would overwrite the input")))
                continue
            if output not in (None, STDIO) and sub not in ("", "."):
                _mkdir(str(Path(out).parent))       # a subfolder of a directory input, mirrored
            try:
                check_writable(out)
            except RemacError as exc:
                out = exc
            jobs.append((inp, out))
        return jobs
    except RemacError as exc:
        click.echo(f"{prog}: error: {exc}", err=True)
        sys.exit(EXIT_FAILED)


def _same_file(inp: str, out: str) -> bool:
    """Whether writing `out` would replace the file `inp` is read from (the same path, or a link)."""
    if STDIO in (inp, out):
        return False
    try:                                # a device or FIFO is written into, not replaced (atomic_write)
        return os.path.isfile(out) and os.path.samefile(inp, out)
    except OSError:                     # either one missing: nothing to overwrite
        return False


def _mkdir(path: str) -> None:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RemacError(f"{path}: cannot create the output directory ({exc.strerror or exc})") from None


def run_batch(prog: str, jobs, work, as_json: bool, quiet: bool, workers: int = 1, runner=None) -> None:
    """Call work(inp, out) -> dict for every (input, output) job; carry on past failures (an output
    claimed by two inputs fails the second; out None: the work writes nothing). workers > 1: that
    many processes (work must pickle: a functools.partial of a module-level function), results
    still reported in input order.
    runner: runs the jobs elsewhere instead (remac-decode --cluster): runner(work, jobs) yields what
    timed(work, inp, out) returns, for every job in input order.
    A result's "report" (text) goes to stdout unless --json; --json adds "file", "status" (ok,
    damaged, failed) and "seconds" to each line. A batch ends with a summary on stderr.
    Exit 1 if any failed, else 3 if any result says "damaged": True (written, but from a damaged
    input), else return (exit 0)."""
    start = time.perf_counter()
    failed = damaged = 0
    claimed, todo = {}, []
    for inp, out in jobs:
        if not isinstance(out, RemacError) and out not in (STDIO, None):       # None: writes nothing
            if out in claimed:
                out = RemacError(f"{inp}: output {out} is already written for {claimed[out]}")
            else:
                claimed[out] = inp
        todo.append((inp, out))
    items = zip(todo, runner(work, todo) if runner is not None else _results(work, todo, workers))
    if len(todo) > 1 and not (quiet or as_json) and sys.stderr.isatty():
        from tqdm import tqdm
        items = tqdm(items, total=len(todo), desc=prog, unit="file", file=sys.stderr)
    for (inp, _), (info, error, seconds) in items:
        record = {"input": inp, "file": inp, "seconds": round(seconds, 3)}
        if error is not None:
            failed += 1
            click.echo(f"{prog}: error: {error}", err=True)
            if as_json:
                click.echo(json.dumps({**record, "ok": False, "status": "failed", "error": error}))
            continue
        for w in info.pop("warnings", []):
            click.echo(f"{prog}: warning: {w}", err=True)
        damaged += bool(info.get("damaged"))
        report = info.pop("report", None)
        if as_json:
            click.echo(json.dumps({**record, "ok": True, "status": "damaged" if info.get("damaged") else "ok", **info}))
        elif report is not None:
            click.echo(report)
        elif not quiet and info.get("summary"):
            click.echo(info["summary"], err=True)
    n = len(todo)
    if n > 1:
        for count, what in ((failed, "failed"), (damaged, "were damaged")):
            if count:
                click.echo(f"{prog}: {count} of {n} files {what}", err=True)
        if not (failed or damaged or quiet):
            click.echo(f"{prog}: all {n} files done in {time.perf_counter() - start:.1f} s", err=True)
    if failed:
        sys.exit(EXIT_FAILED)
    if damaged:
        sys.exit(EXIT_DAMAGED)


def timed(work, inp: str, out):
    """One job, here or in a worker -> (info or None, error line or None, seconds)."""
    start = time.perf_counter()
    try:
        if isinstance(out, RemacError):
            raise out
        info, error = work(inp, out), None
    except RemacError as exc:
        info, error = None, str(exc)
    except MemoryError:
        info, error = None, f"{inp}: out of memory"
    return info, error, time.perf_counter() - start


def _single_threaded() -> None:
    """Worker start: every library's thread pool at one thread (the workers are the parallelism)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def _results(work, jobs, workers: int):
    """timed(work, inp, out) for every job, yielded in input order; with workers > 1 from a pool of
    fresh ('spawn') processes, so that no thread pool or session of this one is inherited."""
    runnable = sum(not isinstance(out, RemacError) for _, out in jobs)
    if workers <= 1 or runnable <= 1:
        for inp, out in jobs:
            yield timed(work, inp, out)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    pool = ProcessPoolExecutor(min(workers, runnable), multiprocessing.get_context("spawn"), _single_threaded)
    try:
        futures = [None if isinstance(out, RemacError) else pool.submit(timed, work, inp, out) for inp, out in jobs]
        for (inp, out), future in zip(jobs, futures):
            yield timed(work, inp, out) if future is None else future.result()
    except KeyboardInterrupt:       # the workers got the SIGINT too: end them now, not after their jobs
        for proc in list((pool._processes or {}).values()):
            proc.terminate()
        remove_temp_files(jobs)     # a terminated worker skipped atomic_write's own clean-up
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class FloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan (every comparison with nan is false, so click's passes it)."""

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if math.isnan(value):
            self.fail(f"{value} is not a number.", param, ctx)
        return value


def jobs_option(what: str):
    """-j/--jobs N (parameter `workers`): N inputs at once in N processes (run_batch)."""
    return click.option("-j", "--jobs", "workers", type=click.IntRange(1, 64), default=1, show_default=True,
                        help=f"Process N {what} at once, in N worker processes each on one thread; "
                             "output in input order.")


def given(name: str) -> bool:
    """Whether the running command's option `name` was set by the user (not defaulted)."""
    from click.core import ParameterSource
    return click.get_current_context().get_parameter_source(name) not in (ParameterSource.DEFAULT,
                                                                          ParameterSource.DEFAULT_MAP)


def version_text(prog: str, describe_model=None) -> str:
    """Package version, the shipped model IDs (plus describe_model(name) per model, if given) and
    the default library; missing artifacts are reported, not raised."""
    from importlib.metadata import PackageNotFoundError, version
    from remac.bitstream import container, library, modelfile
    try:
        pkg = version("remac")
    except PackageNotFoundError:
        pkg = "unknown"
    reads = ", ".join(f"{major}.x" for major in container.BIT_DEPTHS)
    lines = [f"{prog} {pkg} (writes .rmc {'.'.join(map(str, container.VERSION))}; "
             f"reads {reads})"]
    for name in modelfile.SHIPPED:
        try:
            lines.append(f"  model {name}: {modelfile.load(name).model_id.hex()}"
                         + (describe_model(name) if describe_model else ""))
        except RemacError as exc:
            lines.append(f"  model {name}: unavailable ({exc})")
    try:
        lines.append(f"  default library: {library.load().library_id}")
    except RemacError as exc:
        lines.append(f"  default library: unavailable ({exc})")
    return "\n".join(lines)


def version_option(prog: str, describe_model=None):
    """-V/--version: package version, model IDs (plus describe_model(name)), default library."""
    return click.option("-V", "--version", is_flag=True, expose_value=False, is_eager=True,
                        help="Show versions, model IDs and the default library, then exit.",
                        callback=lambda ctx, _, v: v and (click.echo(version_text(prog, describe_model)), ctx.exit()))
