"""famfs-fuzz: the command line. Each verb parses options, calls one engine function, renders text or
--json, and maps the result to an exit code: 0 clean, 1 findings or rejections, 2 unusable input or
usage error. Bad input never produces a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable, Sequence

from harness.famfs.errors import FamfsError
from harness.famfs.ids import uuid_str
from harness.famfs.layout import ALLOC_UNIT, LOG_LEN, Superblock

EXIT_CLEAN, EXIT_FINDINGS, EXIT_UNUSABLE = 0, 1, 2


def _size(text: str) -> int:
    """Sizes as famfs takes them: plain bytes or with a K/M/G/T suffix (powers of 1024)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if t and t[-1] in units:
            return int(t[:-1], 0) * units[t[-1]]
        return int(t, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 4096, 64M, 1G)") from None


def _emit(args: argparse.Namespace, doc: dict[str, Any], text: Callable[[], str]) -> None:
    print(json.dumps(doc, indent=2) if args.json else text())


def _unusable(args: argparse.Namespace, error: FamfsError) -> int:
    _emit(args, {"error": error.as_dict()}, lambda: f"famfs-fuzz: {error}")
    return EXIT_UNUSABLE


def superblock_dict(sb: Superblock) -> dict[str, Any]:
    return {"magic": f"{sb.magic:#x}", "version": sb.version, "log_offset": sb.log_offset,
            "log_len": sb.log_len, "alloc_unit": sb.alloc_unit, "omf": f"{sb.omf_major}.{sb.omf_minor}",
            "fs_uuid": uuid_str(sb.fs_uuid), "dev_uuid": uuid_str(sb.dev_uuid),
            "system_uuid": uuid_str(sb.system_uuid), "crc": f"{sb.crc:#x}", "flags": sb.flags,
            "dd_size": sb.dd_size, "dd_daxdev": sb.dd_daxdev.decode("utf-8", "backslashreplace")}


# -- famfs verbs -------------------------------------------------------------------------------------


def cmd_mkfs(args: argparse.Namespace) -> int:
    from harness.tools.files import mkfs_files
    try:
        result = mkfs_files(args.devices, args.size, log_len=args.log_len, alloc_unit=args.alloc_unit,
                            force=args.force)
    except FamfsError as e:
        return _unusable(args, e)
    _emit(args, {"fs_uuid": result.fs_uuid, "devices": result.devices}, lambda: "\n".join(
        [f"famfs {result.fs_uuid}"] + [f"  index {d['index']}  {d['role']:9}  {d['uuid']}  {d['path']}"
                                       for d in result.devices]))
    return EXIT_CLEAN


def cmd_replay(args: argparse.Namespace, with_fsck: bool = False) -> int:
    from harness.tools.files import replay_files
    try:
        res = replay_files(args.devices, with_fsck=with_fsck, check_crc=not args.no_crc)
    except FamfsError as e:
        return _unusable(args, e)
    r = res.replay
    findings = list(r.rejections) + (res.fsck.findings if res.fsck else [])
    doc: dict[str, Any] = {
        "superblock": superblock_dict(r.superblock),
        "log": {"next_index": r.header.next_index, "last_index": r.header.last_index,
                "entries_read": r.entries_read},
        "index_table": [{"index": d.index, "uuid": d.uuid_text, "size": d.size} for d in r.table],
        "devices": res.devices, **r.namespace.as_dict(),
        "rejections": [e.as_dict() for e in r.rejections], "stopped_at": r.stopped_at}
    if res.fsck:
        doc["fsck"] = {"devices": [u.as_dict() for u in res.fsck.devices],
                       "findings": [e.as_dict() for e in res.fsck.findings]}
    _emit(args, doc, lambda: _replay_text(doc))
    return EXIT_FINDINGS if findings else EXIT_CLEAN


def _replay_text(doc: dict[str, Any]) -> str:
    lines = [f"famfs {doc['superblock']['fs_uuid']}: {len(doc['dirs'])} dirs, {len(doc['files'])} files, "
             f"{doc['log']['entries_read']} entries read"]
    lines += [f"  daxdev {d['index']}: {d['uuid']} ({d['size']} bytes)" for d in doc["index_table"]]
    lines += [f"  d {d['mode']} {d['uid']}:{d['gid']} {d['path']}/" for d in doc["dirs"]]
    lines += [f"  f {f['mode']} {f['uid']}:{f['gid']} {f['size']:>12} {f['path']} ({f['ext_type']})"
              for f in doc["files"]]
    for key in ("rejections",):
        lines += [f"  REJECTED entry {e['entry']}: {e['id']} {e['errno']} {e['message']}" for e in doc[key]]
    if doc["stopped_at"] is not None:
        lines.append(f"  replay stopped at entry {doc['stopped_at']} (LOG-PREFIX)")
    if "fsck" in doc:
        lines += [f"  usage daxdev {u['index']}: {u['files']} files, {u['extents']} extents, "
                  f"{u['allocated']} bytes" for u in doc["fsck"]["devices"]]
        lines += [f"  FSCK entry {e['entry']}: {e['id']} {e['message']}" for e in doc["fsck"]["findings"]]
    return "\n".join(lines)


def cmd_fsck(args: argparse.Namespace) -> int:
    return cmd_replay(args, with_fsck=True)


def cmd_mount(args: argparse.Namespace) -> int:
    from harness.tools.files import mount_announced
    try:
        mount_announced(args.devices, args.mountpoint, node=args.node, abi=args.abi, capable_rawio=not args.no_rawio,
                        probe_log=args.probe_log, reloadable=args.reloadable)
    except FamfsError as e:
        return _unusable(args, e)
    return EXIT_CLEAN


# -- fuzzing verbs -----------------------------------------------------------------------------------


def _harness_error(args: argparse.Namespace, e: Exception) -> int:
    _emit(args, {"error": {"id": "HARNESS", "message": str(e)}}, lambda: f"famfs-fuzz: {e}")
    return EXIT_UNUSABLE


def cmd_targets(args: argparse.Namespace) -> int:
    from harness.engine.registry import all_targets
    ts = all_targets()
    doc: dict[str, list[dict[str, Any]]] = {"targets": [
        {"name": t.name, "doc": (sys.modules[t.one_input.__module__].__doc__ or "").split("\n")[0],
         "timeout_s": t.timeout_s, "max_len": t.max_len} for t in ts]}
    _emit(args, doc, lambda: "\n".join(f"{d['name']:18} {d['doc'].split(': ', 1)[-1]}" for d in doc["targets"]))
    return EXIT_CLEAN


def cmd_fuzz(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness import project
    from harness.engine.campaign import DEFAULT_PARALLEL, counters_text, default_jobs, fuzz
    from harness.engine.errors import HarnessError
    progress = None if args.json else _progress_printer()
    if args.cmd:                                # the external target's command, for every job
        os.environ.update({"FAMFS_FUZZ_EXTERNAL_CMD": args.cmd, "FAMFS_FUZZ_EXTERNAL_DEVICES": str(args.devices),
                           "FAMFS_FUZZ_EXTERNAL_TIMEOUT": str(args.timeout),
                           "FAMFS_FUZZ_EXTERNAL_BATCH": "1" if args.batch else "0",
                           "FAMFS_FUZZ_DIFFERENTIAL": "1" if args.differential else "0"})
    try:
        if args.engine == "afl" or (args.cmd and args.target == "external"):
            from harness.cases.external import program_corpus, program_tag, seed_corpus
            if args.target != "external" or not args.cmd:
                raise HarnessError("--engine afl runs the external target: "
                                   "famfs-fuzz fuzz external --engine afl --cmd ...")
            corpus = args.corpus or program_corpus(args.cmd)      # both lanes: keyed by the program
            here = Path("corpora")                                 # the seeds, wherever the command runs
            corpora = here if (here / "external").is_dir() else project.root() / "corpora"
            if not (corpora / "external").is_dir():
                seed_corpus(corpus)
        if args.engine == "afl":
            from harness.ops.afl import fuzz_afl
            if args.differential or args.batch or args.devices != 1:
                raise HarnessError("--differential, --batch and --devices are the libFuzzer lane's; "
                                   "--engine afl runs the program on one device file under afl-fuzz's forkserver")
            # --max-time is afl-fuzz's -V, --runs its -E (about that many executions): the first ends it
            r = fuzz_afl(args.cmd, max_time=args.max_time, execs=args.runs, crashers=Path(args.crashers),
                         corpus=Path(corpus), seed=args.seed, timeout=args.timeout, afl_args=args.libfuzzer,
                         progress=progress, until=(lambda res: bool(res.fuzz.new)) if args.stop_on_crash else None).fuzz
        elif args.cmd and args.target == "external":
            r = fuzz("external", engine=args.engine, max_time=args.max_time, runs=args.runs,
                     jobs=args.jobs or (1 if args.runs else default_jobs()), corpus=Path(corpus), corpora=corpora,
                     crashers=Path(args.crashers), seed=args.seed, libfuzzer_args=args.libfuzzer, progress=progress,
                     stop_on_new=args.stop_on_crash, log_tag=program_tag(args.cmd) + "-")
        elif args.dax == "real":                  # the cases run in a qemu guest on real devdax
            from harness.realdax.fuzz import fuzz_real
            r = fuzz_real(args.target, max_time=args.max_time, runs=args.runs, seed=args.seed,
                          crashers=Path(args.crashers), inputs=[Path(p) for p in args.input],
                          say=progress or (lambda line: None))
        else:
            r = fuzz(args.target, engine=args.engine, max_time=args.max_time, runs=args.runs,
                     jobs=args.jobs or (1 if args.runs else default_jobs()),
                     corpus=Path(args.corpus) if args.corpus else None, crashers=Path(args.crashers),
                     seed=args.seed, libfuzzer_args=args.libfuzzer, progress=progress,
                     stop_on_new=args.stop_on_crash, hypothesis_db=args.hypothesis_db,
                     parallel=args.parallel or DEFAULT_PARALLEL,
                     hypothesis_db_read_only={"auto": None, "read-only": True,
                                              "read-write": False}[args.hypothesis_db_access])
    except HarnessError as e:
        return _harness_error(args, e)
    doc = r.as_dict()
    _emit(args, doc, lambda: "\n".join(
        [f"{r.target} ({r.engine}): {r.execs} execs in {r.seconds:.1f} s ({r.execs_per_s:,.0f}/s), "
         f"{r.lookups} lookups checked, {r.findings} findings, {len(r.signatures)} signatures "
         f"({len(r.new)} new)" + (" (interrupted)" if r.interrupted else "")]
        + ([f"  {counters_text(r)}"] if counters_text(r) else [])
        + [f"  NEW {k}  {t}" for k, t in r.new.items()]
        + [f"  repro: famfs-fuzz repro {args.crashers}/{r.target}/{k}" for k in r.new]
        + [f"  WARNING job: {e.splitlines()[0]}" for e in r.errors]))
    if r.findings:
        return EXIT_FINDINGS
    return 130 if r.interrupted else EXIT_UNUSABLE if r.errors else EXIT_CLEAN


def cmd_repro(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.engine.crashers import repro
    from harness.engine.errors import HarnessError
    try:
        r = repro(Path(args.crasher), times=args.times, use_minimized=not args.original)
    except HarnessError as e:
        return _harness_error(args, e)
    _emit(args, r.as_dict(), lambda: f"{r.target}: {r.title}: reproduced {r.k} of {r.n} runs"
          + (f"\n  {r.last}" if r.last else ""))
    return EXIT_FINDINGS if r.reproduces else EXIT_CLEAN


def cmd_minimize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.engine.crashers import minimize
    from harness.engine.errors import HarnessError
    try:
        r = minimize(Path(args.crasher), max_steps=args.max_steps)
    except HarnessError as e:
        return _harness_error(args, e)
    _emit(args, r.as_dict(), lambda: f"minimized {r.original} -> {r.final} bytes in {r.steps} runs")
    return EXIT_CLEAN


def cmd_corpus(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.engine.campaign import merge, write_seeds
    from harness.engine.errors import HarnessError
    from harness.engine.registry import load
    try:
        target = load(args.target)
        if args.action == "seed":
            n = write_seeds(target, Path(args.corpora))
            doc: dict[str, Any] = {"target": target.name, "written": n}
        else:
            doc = {"target": target.name, "files": merge(target.name, Path(args.corpora))}
    except (HarnessError, RuntimeError) as e:
        return _harness_error(args, e)
    _emit(args, doc, lambda: json.dumps(doc))
    return EXIT_CLEAN


def cmd_regress(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.engine.crashers import regress
    from harness.engine.errors import HarnessError
    try:
        r = regress(args.targets, Path(args.corpora), all_inputs=args.all)
    except HarnessError as e:
        return _harness_error(args, e)
    _emit(args, r.as_dict(), lambda: "\n".join(
        [f"{sum(r.inputs.values())} inputs replayed over {len(r.inputs)} targets, {r.lookups} lookups checked, "
         f"{len(r.failures)} failures"] + [f"  FAIL {f['target']} {f['input']}: {f['signature']}" for f in r.failures]))
    return EXIT_FINDINGS if r.failures else EXIT_CLEAN


def cmd_compare_abi(args: argparse.Namespace) -> int:
    from harness.ops.compare import compare
    rows = compare(cases=args.cases, seed=args.seed)
    doc = {"cases": args.cases, "seed": args.seed, "generations": [r.as_dict() for r in rows]}

    def text() -> str:
        head = f"{'generation':24} {'failing':>9} {'reg/case':>9} {'idmap':>6} {'ms/case':>8}  invariants broken"
        lines = [head]
        for r in rows:
            d = r.as_dict()
            inv = ", ".join(f"{k} {v}" for k, v in sorted(r.by_invariant.items())) or "none"
            lines.append(f"{r.abi:24} {r.failing:4}/{r.cases:<4} {d['registrations_per_case']:9} "
                         f"{d['id_map_entries_per_case']:6} {d['ms_per_case']:8}  {inv}")
        lines.append("minimal counterexamples (shrunk while the same invariant breaks):")
        lines += [f"  {r.abi} {what}: {m['famfs']}" for r in rows for what, m in sorted(r.minimal.items())]
        return "\n".join(lines)
    _emit(args, doc, text)
    return EXIT_CLEAN


def cmd_nightly(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.ops import report
    from harness.engine.errors import HarnessError
    from harness.ops.nightly import nightly
    out = Path(args.out or f"runs/nightly-{time.strftime('%Y%m%d-%H%M%S')}")
    progress = None if args.json else _progress_printer()
    try:
        result = nightly(out, budget=args.budget, jobs=args.jobs, targets=args.targets,
                         crashers=Path(args.crashers), stop_on_new=args.stop_on_crash, progress=progress,
                         real_dax=args.dax_real, afl_cmds=args.afl_cmd, afl_seconds=args.afl_seconds)
    except HarnessError as e:
        return _harness_error(args, e)
    summary = report.summary_of(result)
    paths = report.write(out, summary)
    _emit(args, {**summary, "reports": [str(p) for p in paths]}, lambda: "\n".join(
        [f"nightly: {summary['execs']:,} execs, {summary['lookups_checked']:,} lookups checked, "
         f"{summary['new_findings']} new signatures, {len(summary['crashers'])} crashers re-checked"]
        + ([f"  lookups ok {summary['lookups_ok']:,} justified {summary['lookups_justified']:,} unjustified "
            f"{summary['lookups_unjustified']:,}, internal errors {summary['internal_errors']:,}"]
           if any(summary[k] for k in ("lookups_ok", "lookups_justified", "lookups_unjustified", "internal_errors"))
           else [])
        + [f"  coverage never grew past the corpus "
           f"({'known: ' + f['reason'] if f.get('known') else 'a harness problem'}): {f['target']}"
           for f in summary["coverage_flat"]]
        + [f"  {p}" for p in paths]))
    return EXIT_FINDINGS if summary["new_findings"] or any(c["status"] != "fixed" for c in summary["crashers"]) \
        else EXIT_CLEAN


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.ops import report
    try:
        summary = json.loads((Path(args.run_dir) / "summary.json").read_text())
    except (OSError, ValueError) as e:
        return _harness_error(args, e)
    paths = report.write(Path(args.run_dir), summary)
    _emit(args, {"reports": [str(p) for p in paths]}, lambda: "\n".join(str(p) for p in paths))
    return EXIT_CLEAN


def _progress_printer() -> Callable[[str], None]:
    """Live progress: one rewritten line on a terminal, plain lines otherwise."""
    if sys.stdout.isatty():
        def show(line: str) -> None:
            sys.stdout.write("\r\x1b[K" + line.strip()[:160])
            sys.stdout.flush()
        return show
    return lambda line: print(line, flush=True)


# -- operations --------------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from harness.ops import bench
    result = bench.run(repeat=args.repeat)
    lines = [
        f"replay of a full 8 MiB log ({result.log_entries} entries): {result.replay_s * 1e3:.1f} ms "
        f"({result.replay_entries_per_s:,.0f} entries/s)",
        f"CRC + seqnum check only, same entries:          {result.crc_only_s * 1e3:.1f} ms",
        f"ratio replay / CRC-only:                         {result.replay_over_crc:.1f}x"]
    doc: dict[str, Any] = {"replay": result.as_dict()}
    if args.targets:
        doc["targets"] = bench.target_rates(seconds=args.target_seconds)
        doc["atheris"] = {"log_replay": bench.atheris_rate("log_replay", seconds=max(5.0, args.target_seconds))}
        lines += [f"{n:18} {r['execs_per_s']:>9,.0f} exec/s {r['execs_per_cpu_s']:>9,.0f} per CPU s "
                  f"{r['lookups_checked']:>9,} lookups" for n, r in doc["targets"].items()]
        a = doc["atheris"]["log_replay"]
        lines.append(f"{'log_replay, Atheris':18} {a['execs_per_s']:>9,.0f} exec/s "
                     f"{a['execs_per_cpu_s']:>9,.0f} per CPU s")
        doc["goals"] = bench.judge(doc)
        lines += bench.goal_lines(doc["goals"])
    if args.targets or args.states:
        doc["shm_states"] = bench.shm_states_rate(seconds=args.target_seconds)
        lines += bench.shm_lines(doc["shm_states"])
    if not args.no_fuse:
        with tempfile.TemporaryDirectory(prefix="famfs-bench-") as tmp:
            golden = bench.golden_file(tmp)
            fr = bench.fuse_read(tmp, golden, repeat=args.repeat)
        doc["fuse"] = fr.as_dict()
        lines += [
            f"FUSE read, {fr.read_size >> 10} KiB reads of {fr.file_bytes >> 20} MiB: {fr.fuse_mb_s:,.0f} MB/s",
            f"direct copy from the mapping, same bytes:     {fr.mmap_copy_mb_s:,.0f} MB/s",
            f"ratio FUSE / mmap copy:                        {fr.fuse_over_mmap:.2f}",
            f"FUSE floor (same adapter, constant buffer):    {fr.floor_mb_s:,.0f} MB/s, "
            f"ratio {fr.floor_over_mmap:.2f}",
            f"golden image: famfs-fuzz mount until serving {fr.golden_mount_s * 1e3:.0f} ms; "
            f"in-process Daemon.mount {fr.golden_daemon_mount_s * 1e3:.1f} ms"]
    _emit(args, doc, lambda: "\n".join(lines))
    return EXIT_CLEAN


def cmd_fuzz_default(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.engine.campaign import counters_text
    from harness.engine.errors import HarnessError
    from harness.ops.default_job import run_default
    progress = None if args.json else (lambda line: print(line, flush=True))
    try:
        run = run_default(Path(args.out), budget=args.max_time, crashers=Path(args.crashers), progress=progress,
                          slots=args.jobs, targets=args.targets)
    except HarnessError as e:
        return _harness_error(args, e)
    doc = run.as_dict()
    _emit(args, doc, lambda: "\n".join(
        [f"{'target':18} {'execs':>8} {'exec/s':>8} {'lookups':>9} findings"]
        + [f"{r.target:18} {r.execs:8} {r.execs_per_s:8,.0f} {r.lookups:9} {r.findings}"
           + (f"  ({counters_text(r)})" if counters_text(r) else "") for r in run.results]
        + ([f"coverage never grew past the corpus: {', '.join(run.flat)}"] if run.flat else [])
        + [f"summary: {run.summary_path}; crash folders under {args.crashers}/"]))
    return EXIT_FINDINGS if run.findings else 130 if run.interrupted else EXIT_CLEAN


# -- parser ------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="famfs-fuzz", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    def verb(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        sp.set_defaults(fn=fn)
        return sp

    sp = verb("mkfs", cmd_mkfs, "create and format emulated DAX device files (primary first)")
    sp.add_argument("devices", nargs="+", metavar="DEV", help="device file path (created sparse if missing)")
    sp.add_argument("--size", type=_size, default=_size("256M"), help="device size (default 256M)")
    sp.add_argument("--log-len", type=_size, default=LOG_LEN, help="log length (default 8M)")
    sp.add_argument("--alloc-unit", type=_size, default=ALLOC_UNIT, help="allocation unit (default 2M)")
    sp.add_argument("-f", "--force", action="store_true", help="overwrite an existing famfs")
    for name, fn, text in (("replay", cmd_replay, "replay the log of a famfs image (logplay)"),
                           ("fsck", cmd_fsck, "replay, then check extents across files (fsck)")):
        sp = verb(name, fn, text)
        sp.add_argument("devices", nargs="+", metavar="DEV[=NAME]",
                        help="device files, primary first; NAME is the node-local device name")
        sp.add_argument("--no-crc", action="store_true", help="skip entry CRC checks (checks-off triage)")
    sp = verb("mount", cmd_mount, "mount a famfs through FUSE and serve it until unmounted")
    sp.add_argument("devices", nargs="+", metavar="DEV[=NAME]", help="device files or /dev/daxX.Y, primary first")
    sp.add_argument("mountpoint", metavar="MOUNTPOINT")
    sp.add_argument("--node", default="node0", help="this node's name (device names are per node)")
    sp.add_argument("--abi", default="pull-devt", choices=["pull-name", "pull-devt", "push-fd", "backing-id"],
                    help="kernel ABI generation to emulate (default pull-devt)")
    sp.add_argument("--no-rawio", action="store_true", help="act as a daemon without CAP_SYS_RAWIO")
    sp.add_argument("--probe-log", metavar="FILE", help="append every probe event to FILE as JSON lines")
    sp.add_argument("--reloadable", action="store_true",
                    help="harness mode: no kernel caching; SIGUSR1 remounts the devices' current image")
    sp = verb("targets", cmd_targets, "list the fuzz targets")
    sp = verb("fuzz", cmd_fuzz, "fuzz one target; keeps going after findings, exits 1 if it recorded any")
    sp.add_argument("target")
    sp.add_argument("--engine", choices=["atheris", "hypothesis", "afl"], default="atheris",
                    help="afl: the external target under afl-fuzz (a program built with afl-cc; docs/external.md)")
    sp.add_argument("--max-time", type=float, default=60.0, help="seconds (default 60)")
    sp.add_argument("--runs", type=int, default=None,
                    help="stop after this many inputs in all, split over the jobs (each runs its corpus first); "
                         "with --engine afl, afl-fuzz's -E: about this many")
    sp.add_argument("--jobs", type=int, default=None,
                    help="parallel fuzzing processes (atheris; default: every core, 1 with --runs)")
    sp.add_argument("--parallel", choices=["ours", "libfuzzer"], default=None,
                    help="atheris --jobs N: N jobs of ours (the default, faster here: docs/benchmarks.md) or "
                         "libfuzzer (one -fork=N: libFuzzer runs the children and merges their corpora)")
    sp.add_argument("--corpus", default=None, help="working corpus directory (default runs/TARGET/corpus)")
    sp.add_argument("--crashers", default="crashers", help="crash store root (default crashers/)")
    sp.add_argument("--seed", type=int, default=None)
    sp.add_argument("--stop-on-crash", action="store_true", help="end at the first new signature")
    sp.add_argument("--hypothesis-db", metavar="DIR|redis://HOST:PORT/N|none", default=None,
                    help="hypothesis: the example database (default runs/TARGET/hypothesis/; docs/shared-fuzzing.md)")
    sp.add_argument("--hypothesis-db-access", choices=["auto", "read-only", "read-write"], default="auto",
                    help="hypothesis: read-only replays the database and never writes it; auto (the default) is "
                         "read-only when $CI is set, read-write otherwise")
    sp.add_argument("--cmd", help="external target: the command, with {image} / {image0}.. / {images}")
    sp.add_argument("--devices", type=int, default=1, help="external target: device images per case")
    sp.add_argument("--timeout", type=float, default=10.0, help="external target: seconds per run")
    sp.add_argument("--batch", action="store_true", help="external target: one process reads paths on stdin")
    sp.add_argument("--differential", action="store_true", help="external target: compare with our replay")
    sp.add_argument("--dax", choices=["emulated", "real"], default="emulated",
                    help="real: run the cases in a qemu guest on real device-dax (mount_e2e, daemon_kill)")
    sp.add_argument("--input", action="append", default=[], metavar="FILE",
                    help="--dax real: run exactly these inputs (e.g. a crash folder's input)")
    sp.add_argument("libfuzzer", nargs="*", metavar="-- LIBFUZZER_FLAG", help="passed to libFuzzer after --")
    sp = verb("repro", cmd_repro, "replay a recorded crash; exits 1 if it still happens")
    sp.add_argument("crasher", metavar="CRASHER_DIR")
    sp.add_argument("--times", type=int, default=10)
    sp.add_argument("--original", action="store_true", help="use the original input, not the minimized one")
    sp = verb("minimize", cmd_minimize, "shrink a crash's input while its signature stays the same")
    sp.add_argument("crasher", metavar="CRASHER_DIR")
    sp.add_argument("--max-steps", type=int, default=2000)
    sp = verb("corpus", cmd_corpus, "seed a target's corpus, or merge/prune it keeping coverage")
    sp.add_argument("action", choices=["seed", "merge", "prune"])
    sp.add_argument("target")
    sp.add_argument("--corpora", default="corpora")
    sp = verb("regress", cmd_regress, "replay corpora/TARGET/regress/ of every (or the named) target")
    sp.add_argument("targets", nargs="*")
    sp.add_argument("--corpora", default="corpora")
    sp.add_argument("--all", action="store_true", help="replay the whole corpus, not only regress/")
    sp = verb("compare-abi", cmd_compare_abi, "run the same cases under every kernel ABI generation")
    sp.add_argument("--cases", type=int, default=300)
    sp.add_argument("--seed", type=int, default=0)
    sp = verb("nightly", cmd_nightly, "fuzz every target within a budget, merge corpora, re-check crashers, report")
    sp.add_argument("--budget", type=float, default=3600.0, help="seconds in all (default 3600)")
    sp.add_argument("--jobs", type=int, default=None, help="campaigns at a time (default: every core)")
    sp.add_argument("--targets", nargs="*", default=[], help="default: all")
    sp.add_argument("--out", default=None, help="run directory (default runs/nightly-DATE)")
    sp.add_argument("--crashers", default="crashers")
    sp.add_argument("--stop-on-crash", action="store_true", help="PR mode: end at the first new signature")
    sp.add_argument("--dax-real", type=float, default=0.0, metavar="SECONDS",
                    help="also run mount_e2e on real device-dax in a qemu guest for SECONDS (skipped, "
                         "with the reason, where qemu cannot run)")
    sp.add_argument("--afl-cmd", action="append", default=[], metavar="CMD",
                    help="also fuzz this external program (built with afl-cc) in the AFL++ lane; repeatable")
    sp.add_argument("--afl-seconds", type=float, default=300.0, metavar="SECONDS",
                    help="seconds of the AFL++ lane per --afl-cmd (default 300)")
    sp = verb("report", cmd_report, "write summary.json, junit.xml and report.html of a run directory again")
    sp.add_argument("run_dir")
    sp = verb("bench", cmd_bench, "measure replay speed against the CRC-only floor")
    sp.add_argument("--repeat", type=int, default=5, help="timings per figure; the best is kept")
    sp.add_argument("--no-fuse", action="store_true", help="skip the FUSE mount measurements")
    sp.add_argument("--targets", action="store_true", help="also exec/s of every target, in process")
    sp.add_argument("--target-seconds", type=float, default=3.0)
    sp.add_argument("--states", action="store_true",
                    help="also shm_states' shared-memory states per second, per operation (included in --targets)")
    sp = verb("fuzz-default", cmd_fuzz_default, "the README's main job: every target, mount_e2e included")
    sp.add_argument("--out", default="runs/default", help="run directory (default runs/default)")
    sp.add_argument("--max-time", type=float, default=180.0, help="total seconds, shared by the targets (default 180)")
    sp.add_argument("--crashers", default="crashers", help="crash store root (default crashers/)")
    sp.add_argument("--jobs", type=int, default=None, help="campaigns at a time (default: every core)")
    sp.add_argument("--targets", nargs="*", default=[], help="default: every target that needs no configuration")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:                    # argparse: usage errors exit 2, --help exits 0
        return int(e.code or 0)
    try:
        return int(args.fn(args))
    except KeyboardInterrupt:
        print("famfs-fuzz: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
