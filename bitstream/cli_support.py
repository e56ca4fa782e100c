"""What both CLIs share: one-line errors, atomic output, batch loops with a progress bar."""
import json
import os
import sys
import tempfile
from pathlib import Path

import click

from bitstream.errors import RemacError

STDIO = "-"


def read_input(path: str) -> bytes:
    if path == STDIO:
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


def atomic_write(path: str, data: bytes) -> None:
    """Write all of `data` or nothing: temp file in the target directory, fsync, rename."""
    if path == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if target.is_dir():
        raise RemacError(f"{path}: output is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent or ".")
    except FileNotFoundError:
        raise RemacError(f"{path}: output directory {target.parent} does not exist") from None
    except OSError as exc:
        raise RemacError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
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


def output_for(inp: str, output: str, n_inputs: int, suffix: str) -> str:
    """Where one input's result goes: -o file/-, -o directory (batch, or a name ending in '/'),
    or beside the input."""
    if output is not None and n_inputs > 1 and output != STDIO and not Path(output).is_dir():
        raise RemacError(f"{output}: with several inputs, -o must be an existing directory")
    if output is not None and (n_inputs == 1 and not Path(output).is_dir() and not output.endswith(os.sep)):
        return output
    stem = "stdin" if inp == STDIO else Path(inp).name.rsplit(".", 1)[0]
    folder = Path(output) if output is not None else (Path.cwd() if inp == STDIO else Path(inp).parent)
    return str(folder / (stem + suffix))


def plan_outputs(prog: str, inputs, output: str, suffix: str, as_json: bool) -> list:
    """-> [(input, output path)]. Usage error (exit 2) for '-o -' with several inputs or with --json
    (stdout carries the data); exit 1 with one line if -o cannot serve these inputs."""
    if output == STDIO and len(inputs) > 1:
        raise click.UsageError("-o - takes a single input")
    if output == STDIO and as_json:
        raise click.UsageError("--json needs stdout; use -o FILE with --json")
    try:
        return [(inp, output_for(inp, output, len(inputs), suffix)) for inp in inputs]
    except RemacError as exc:
        click.echo(f"{prog}: error: {exc}", err=True)
        sys.exit(1)


def run_batch(prog: str, jobs, work, as_json: bool, quiet: bool) -> None:
    """Call work(inp, out) -> dict for every (input, output) job; carry on past failures (an output
    claimed by two inputs fails the second); exit 1 if any failed."""
    inputs = [inp for inp, _ in jobs]
    failed = 0
    claimed = {}
    show_bar = len(inputs) > 1 and not (quiet or as_json) and sys.stderr.isatty()
    items = jobs
    if show_bar:
        from tqdm import tqdm
        items = tqdm(jobs, desc=prog, unit="file", file=sys.stderr)
    for inp, out in items:
        try:
            if out != STDIO and out in claimed:
                raise RemacError(f"{inp}: output {out} is already written for {claimed[out]}")
            claimed[out] = inp
            info = work(inp, out)
        except RemacError as exc:
            failed += 1
            click.echo(f"{prog}: error: {exc}", err=True)
            if as_json:
                click.echo(json.dumps({"input": inp, "ok": False, "error": str(exc)}))
            continue
        except MemoryError:
            failed += 1
            click.echo(f"{prog}: error: {inp}: out of memory", err=True)
            continue
        for w in info.pop("warnings", []):
            click.echo(f"{prog}: warning: {w}", err=True)
        if as_json:
            click.echo(json.dumps({"input": inp, "ok": True, **info}))
        elif not quiet and info.get("summary"):
            click.echo(info["summary"], err=True)
    if failed:
        if len(inputs) > 1:
            click.echo(f"{prog}: {failed} of {len(inputs)} files failed", err=True)
        sys.exit(1)


def version_text(prog: str, describe_model=None) -> str:
    """Package version, the shipped model IDs (plus describe_model(name) per model, if given) and
    the default library; missing artifacts are reported, not raised."""
    from importlib.metadata import PackageNotFoundError, version
    from bitstream import library, modelfile
    try:
        pkg = version("remac")
    except PackageNotFoundError:
        pkg = "unknown"
    lines = [f"{prog} {pkg} (.rmc format 1.0)"]
    for name in modelfile.NAME_FOR_CHANNELS.values():
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
