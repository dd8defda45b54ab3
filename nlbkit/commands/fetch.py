"""`nlbkit fetch`: NLB NWB files from DANDI, and the public test-phase targets."""

from __future__ import annotations

import click

from nlbkit.commands.dataset_arg import DATASET_OR_ALL
from nlbkit.errors import NlbkitError
from nlbkit.fetch.download import LocalState, RetryPolicy, Unreachable, human_bytes, partial_dir
from nlbkit.nlb.marker import is_generated_file

INSTANCE_HELP = (
    "DANDI API server to use (default: $NLBKIT_DANDI_INSTANCE, else the public DANDI archive, "
    "https://api.dandiarchive.org/api)."
)


@click.command(name="fetch")
@click.argument("datasets", nargs=-1, type=DATASET_OR_ALL, metavar="[DATASET]... | all")
@click.option("--list", "list_only", is_flag=True,
              help="Show each dataset's files, their size in the archive and whether a verified copy is "
                   "present; download nothing. Without names: all datasets.")
@click.option("--targets", is_flag=True,
              help="Also download the public test-phase targets eval_data_test.h5 (nlb_tools repository) "
                   "into DATA_DIR, for `nlbkit evaluate --phase test`.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where datasets go, as DATA_DIR/<dataset>/<asset name> "
                   "(default: $NLBKIT_DATA, else data/).")
@click.option("--dandi-instance", metavar="URL", default=None, help=INSTANCE_HELP)
@click.option("--version", "version", metavar="VERSION", default=None,
              help="Dandiset version to fetch, e.g. 0.220113.0408 or 'draft' (default: the published "
                   "version pinned for each dataset in the registry).")
@click.option("--targets-url", metavar="URL", default=None,
              help="Where to download eval_data_test.h5 from (default: $NLBKIT_TARGETS_URL, else the "
                   "pinned nlb_tools commit).")
@click.option("--targets-sha256", metavar="HEX", default=None,
              help="Expected SHA-256 of the targets file at --targets-url (default: $NLBKIT_TARGETS_SHA256, "
                   "else the digest of the pinned file).")
@click.option("--retries", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Tries per file when a transfer fails without progress; a cut connection resumes.")
@click.option("--no-progress", is_flag=True, help="No progress bars (for logs).")
def command(datasets: tuple[str, ...], list_only: bool, targets: bool, data_dir: str | None,
            dandi_instance: str | None, version: str | None, targets_url: str | None,
            targets_sha256: str | None, retries: int, no_progress: bool) -> None:
    """Download NLB NWB files from DANDI into DATA_DIR/<dataset>/ (resumable, verified).

    \b
    Examples:
      nlbkit fetch mc_maze_small              # train + test NWB files of one dataset
      nlbkit fetch mc_maze area2_bump         # several
      nlbkit fetch all --targets              # all seven, and the test-phase targets
      nlbkit fetch --list                     # sizes in the archive, what is here already

    Files already present whose size and dandi-etag match the archive are skipped. An
    interrupted download (Ctrl-C, killed process, cut connection) resumes on the next run from
    DATA_DIR/<dataset>/<file>.dandidownload/; a file only gets its final name once complete and
    verified. A local file that does not match the archive is reported and fetched again.
    """
    from nlbkit.fetch import archive as fetch_lib

    verbose = bool(click.get_current_context().find_root().params.get("debug"))
    policy = RetryPolicy(attempts=retries)
    if list_only:
        if targets:
            raise click.UsageError("--list shows the datasets; use it without --targets")
        try:
            rows = fetch_lib.list_status(datasets or ("all",), data_dir, instance=dandi_instance,
                                         version=version, policy=policy, verbose=verbose)
        except Unreachable as exc:
            _print_local_listing(fetch_lib.list_local(datasets or ("all",), data_dir))
            click.echo(f"the archive could not be reached ({exc}); local files only, checked against "
                       "the sizes and checksums recorded at their last fetch")
            return
        _print_listing(rows)
        return
    if not datasets and not targets:
        raise click.UsageError("name one or more datasets (or 'all'), or use --targets or --list")
    names = fetch_lib.dataset_names(datasets)  # unknown names fail before any download
    try:
        outcomes = fetch_lib.fetch(names, data_dir, instance=dandi_instance, version=version,
                                   progress=not no_progress, policy=policy, echo=click.echo,
                                   verbose=verbose) if names else []
        if targets:
            outcomes.append(_fetch_targets(data_dir, targets_url, targets_sha256, not no_progress, policy))
    except KeyboardInterrupt:
        raise NlbkitError(
            "interrupted; partial downloads stay in <file>.dandidownload/ and resume on the next run"
        ) from None
    _print_summary(outcomes)


def _fetch_targets(data_dir, url, sha256, progress, policy):
    from nlbkit.fetch.test_targets import fetch_targets, source_from_env

    outcome = fetch_targets(data_dir, source_from_env(url, sha256), progress=progress, policy=policy)
    if outcome.action == "skipped":
        click.echo(f"{outcome.path.name}: present and verified, skipped")
    elif outcome.action == "replaced":
        click.echo(f"{outcome.path.name}: local file did not match ({outcome.detail}); fetched again")
    return outcome


def _print_summary(outcomes) -> None:
    """One line per transferred file (size, time, rate), then the totals."""
    moved = [o for o in outcomes if o.transfer is not None]
    for o in moved:
        t = o.transfer
        rate = t.received / t.seconds if t.seconds > 0 else 0.0
        extra = f", resumed at {human_bytes(t.resumed_from)}" if t.resumed_from else ""
        extra += ", a bad partial download was discarded" if t.restarted else ""
        click.echo(f"{o.action} {o.path}: {human_bytes(t.received)} in {t.seconds:.1f} s "
                   f"({human_bytes(rate)}/s{extra})")
    received = sum(o.transfer.received for o in moved)
    skipped = len(outcomes) - len(moved)
    click.echo(f"done: {len(moved)} file(s) fetched ({human_bytes(received)}), "
               f"{skipped} already present and verified")


def _print_listing(rows) -> None:
    header = ("dataset", "version", "file", "size", "local copy")
    lines = [header]
    for row in rows:
        r, local = row.remote, row.local
        state = local.state.value
        if local.state is LocalState.DIFFERS:
            state = f"differs ({local.detail})"
        if local.state is not LocalState.VERIFIED and is_generated_file(row.path):
            state = "generated (nlbkit synth), not the archive's file"
        if local.partial_bytes:
            done = 100 * local.partial_bytes / max(r.size, 1)
            state += f"; partial {done:.0f}% in {partial_dir(row.path).name}"
        lines.append((r.dataset, r.version, r.name, human_bytes(r.size), state))
    _print_table(lines)
    total = sum(row.remote.size for row in rows)
    missing = sum(row.remote.size for row in rows if row.local.state is not LocalState.VERIFIED)
    click.echo(f"total {human_bytes(total)} in the archive; {human_bytes(missing)} still to download")


def _print_local_listing(rows) -> None:
    lines = [("dataset", "version", "file", "size", "local copy")]
    for r in rows:
        size = human_bytes(r.size) if r.size is not None else "?"
        lines.append((r.dataset, r.version, r.name, size, r.state))
    _print_table(lines)


def _print_table(lines: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell; the last column as it is."""
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    for line in lines:
        cells = [cell.ljust(w) for cell, w in zip(line[:4], widths, strict=True)]
        click.echo("  ".join([*cells, line[4]]))
