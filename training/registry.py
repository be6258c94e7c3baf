"""The model registry: every trained version kept side by side, one champion in
service, and a history of who registered, promoted or rolled back what, and why.

Its files: model/registry_layout.py. registry.json is replaced atomically (temp file + os.replace) under a lock file,
so a reader (the service) sees either the old state or the new one."""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.artifact import MODEL_FILE, SIGNATURE, ArtifactError, SigningKey, read_metadata, save_model, sha256_file
from model.registry_layout import LOCK_FILE, MODELS_DIR, REGISTRY_FILE, REPORTS_DIR, VERSION_NAME
from model.triage import TriageModel

# The numbers a challenger must not lose on: intake routing across all divisions
# (macro-F1, so a small division counts as much as a big one) and finding high-risk cases.
DEFAULT_KEY_METRICS = ("division.macro_f1", "risk.high_recall")
# Held-out sets are one quarter of petitions; differences smaller than this are noise.
DEFAULT_TOLERANCE = 0.02
# Metrics a promotion can be gated on: all higher-is-better, as `compare` assumes.
KEY_METRIC_CHOICES = (
    "division.accuracy", "division.macro_f1", "division.top3_accuracy",
    "risk.accuracy", "risk.macro_f1", "risk.high_recall", "risk.high_precision",
    "key_group.accuracy", "key_group.macro_f1", "key_group.any_f1",
)
# The review queue must stay workable: recall bought by flagging more than this
# share of petitions high is not a standard a challenger has to meet.
HIGH_SHARE_CEILING = 0.15


class RegistryError(RuntimeError):
    """An operation on the registry that cannot be done; the message says why."""


class PromotionRefused(RegistryError):
    def __init__(self, message: str, checks: list[MetricCheck]) -> None:
        super().__init__(message)
        self.checks = checks


@dataclass
class MetricCheck:
    metric: str  # "head.name", e.g. "division.macro_f1"
    champion: float | None
    challenger: float | None
    tolerance: float
    excused: str | None = None  # why a loss on this metric does not count
    # A share that must stay at or below this (lower is better), e.g. the petitions flagged
    # high; it may rise by `tolerance` over the champion's when the champion was already over.
    ceiling: float | None = None

    @property
    def delta(self) -> float | None:
        if self.champion is None or self.challenger is None:
            return None
        return self.challenger - self.champion

    @property
    def worse(self) -> bool:
        if self.ceiling is not None:
            return (self.challenger is not None and self.challenger > self.ceiling and self.excused is None
                    and (self.champion is None or self.challenger > self.champion + self.tolerance))
        delta = self.delta
        return delta is not None and delta < -self.tolerance and self.excused is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"delta": self.delta, "worse": self.worse}


def metric_value(metrics: dict[str, Any] | None, name: str) -> float | None:
    if not metrics:
        return None
    head, _, key = name.partition(".")
    value = metrics.get(head, {}).get(key)
    return None if value is None else float(value)


def check_key_metrics(key_metrics: tuple[str, ...] | list[str]) -> None:
    unknown = [m for m in key_metrics if m not in KEY_METRIC_CHOICES]
    if unknown:
        raise RegistryError(f"unknown key metric(s) {unknown}; choose from {', '.join(KEY_METRIC_CHOICES)}")


def compare(champion: dict[str, Any] | None, challenger: dict[str, Any],
            key_metrics: tuple[str, ...] | list[str] = DEFAULT_KEY_METRICS,
            tolerance: float = DEFAULT_TOLERANCE) -> list[MetricCheck]:
    check_key_metrics(key_metrics)
    checks = [MetricCheck(m, metric_value(champion, m), metric_value(challenger, m), tolerance) for m in key_metrics]
    champion_share = metric_value(champion, "risk.high_share")
    challenger_share = metric_value(challenger, "risk.high_share")
    for check in checks:
        if (check.metric == "risk.high_recall" and champion_share is not None and challenger_share is not None
                and champion_share > HIGH_SHARE_CEILING >= challenger_share):
            check.excused = (f"the champion flags {champion_share:.1%} of petitions high, over the "
                             f"{HIGH_SHARE_CEILING:.0%} a review queue can take; the challenger flags {challenger_share:.1%}")
    if challenger_share is not None and challenger_share > HIGH_SHARE_CEILING and (
            champion_share is None or challenger_share > champion_share + tolerance):
        # The shares themselves, not a pass/fail pair: it was shown as "champion 1.000 challenger
        # 0.000 -1.000", figures that are neither model's.
        checks.append(MetricCheck("risk.high_share", champion_share, challenger_share, tolerance,
                                  ceiling=HIGH_SHARE_CEILING))
    return checks


def ceiling_detail(check: MetricCheck) -> str:
    """Why a share over its ceiling is refused, in words, with both models' shares."""
    champion = "not known" if check.champion is None else f"{check.champion:.1%}"
    return (f"the challenger flags {check.challenger:.1%} of petitions high, over the {check.ceiling:.0%} a review "
            f"queue can take (champion {champion})")


def _worse_detail(worse: list[MetricCheck]) -> str:
    return "; ".join(f"{c.metric}: {ceiling_detail(c)}" if c.ceiling is not None else
                     f"{c.metric} {c.challenger:.3f} vs champion {c.champion:.3f} "
                     f"({c.delta:+.3f}, tolerance {c.tolerance})" for c in worse)


def _model_file_recorded(directory: Path, metadata: dict[str, Any]) -> bool:
    """Whether the model file in `directory` is the one `metadata` records; OSError when it
    cannot be read."""
    return sha256_file(directory / MODEL_FILE) == metadata.get("model_sha256")


def promote_command(version: str, registry: str | Path, key_metrics: tuple[str, ...] | list[str] = DEFAULT_KEY_METRICS,
                    tolerance: float = DEFAULT_TOLERANCE) -> str:
    """The `triage models promote` command that checks `version` as retrain checked it, quoted
    for a shell. A retrain run with its own --metric or --tolerance printed the plain command,
    which checked the default ones instead and refused what the run had shown as ok."""
    words = ["triage", "models", "promote", version, "--registry", str(registry)]
    if tuple(key_metrics) != DEFAULT_KEY_METRICS:
        for metric in key_metrics:
            words += ["--metric", metric]
    if tolerance != DEFAULT_TOLERANCE:
        words += ["--tolerance", f"{tolerance:g}"]
    return shlex.join(words)


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return os.environ.get("USER") or "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); the service, maybe another user, must read it.
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.state_path = self.root / REGISTRY_FILE
        self.models_dir = self.root / MODELS_DIR
        self.reports_dir = self.root / REPORTS_DIR

    # ------------------------------------------------------------ reading
    def read_state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            if self.root.exists() and not self.root.is_dir():
                raise RegistryError(f"{self.root} is not a directory")
            return {"champion": None, "history": []}
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{self.state_path} is not valid JSON ({exc.msg}, line {exc.lineno}); "
                                "restore it from backup, the model directories are intact") from None
        if not isinstance(state, dict) or "champion" not in state or not isinstance(state.get("history"), list):
            raise RegistryError(f"{self.state_path} lacks 'champion' or a 'history' list; not a registry file")
        return state

    def check_writable(self) -> None:
        """Raise RegistryError when a version could not be registered here: a folder on the
        way is a file, or the nearest existing folder cannot be written in."""
        for folder in (self.root, self.models_dir, self.reports_dir):
            existing = folder
            while not existing.exists() and existing != existing.parent:
                existing = existing.parent
            if not existing.is_dir():
                raise RegistryError(f"{self.root}: {existing} is a file, not a folder; give --registry a folder")
            # Tried rather than asked with os.access: that says yes to root on a read-only disk.
            try:
                with tempfile.TemporaryDirectory(prefix=".write-check-", dir=existing):
                    pass
            except OSError as exc:
                raise RegistryError(f"{self.root}: cannot write in {existing} ({exc.strerror or exc}); give "
                                    "--registry a folder you can write to") from None

    def champion(self) -> str | None:
        return self.read_state()["champion"]

    def key_id(self, version: str) -> str | None:
        """The id of the key `version` was signed with; None when it cannot be read."""
        try:
            signature = self.metadata(version).get(SIGNATURE)
        except RegistryError:
            return None
        return signature.get("key_id") if isinstance(signature, dict) else None

    def check_signing_key(self, key: SigningKey | None) -> None:
        """Raise RegistryError when what this run registers would be signed with another key
        than the champion's (`key` None: none exists yet, and a new one would be made).

        A service loads the champion with its own key: a version signed with another one
        is refused by every worker after its promotion, which the registry records all the
        same, so the two disagree on the model in service."""
        champion = self.champion()
        expected = self.key_id(champion) if champion is not None else None
        if expected is None or (key is not None and key.key_id == expected):
            return
        found = "no signing key (a new one would be made)" if key is None else f"key id {key.key_id} from {key.source}"
        raise RegistryError(f"the champion {champion} of {self.root} was signed with key id {expected}, and this run "
                            f"has {found}: the service could not load what it registers. Run it with the service's "
                            "TRIAGE_HOME, or TRIAGE_SIGNING_KEY_FILE naming the service's key; after changing the key "
                            "on purpose, sign the champion again with `triage sign --model DIR`")

    def model_dir(self, version: str) -> Path:
        if not VERSION_NAME.match(version):
            raise RegistryError(f"{version!r} is not a version name (letters, digits, '.', '_', '-')")
        return self.models_dir / version

    def report_path(self, version: str) -> Path:
        return self.reports_dir / f"{self.model_dir(version).name}.html"

    def metadata(self, version: str) -> dict[str, Any]:
        path = self.model_dir(version)
        if not path.is_dir():
            known = ", ".join(self.version_names()) or "none"
            raise RegistryError(f"no version {version!r} in {self.models_dir} (registered: {known})")
        try:
            return read_metadata(path)
        except ArtifactError as exc:
            raise RegistryError(str(exc)) from None

    def intact_metadata(self, version: str) -> dict[str, Any]:
        """The metadata of `version`, once its model file is checked to be the one it
        records; RegistryError when it is missing or changed (a copy cut short, a full disk).

        The service refuses such an artifact and keeps its model: made champion, the
        registry would name a model that nothing serves."""
        metadata = self.metadata(version)
        model_file = self.model_dir(version) / MODEL_FILE
        try:
            intact = _model_file_recorded(self.model_dir(version), metadata)
        except OSError as exc:
            raise RegistryError(f"{version}: {model_file} cannot be read ({exc.strerror or exc}); "
                                "restore the version's directory from a backup") from None
        if not intact:
            raise RegistryError(f"{version}: {model_file} is not the file its metadata records (damaged or cut "
                                "short); restore the version's directory from a backup")
        return metadata

    def version_names(self) -> list[str]:
        if not self.models_dir.is_dir():
            return []
        # save_model stages into dot-directories; those are never versions.
        return sorted(p.name for p in self.models_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self) -> list[dict[str, Any]]:
        """Metadata of every registered version, oldest first; a damaged one is listed with its error."""
        rows = []
        for name in self.version_names():
            try:
                rows.append(read_metadata(self.models_dir / name))
            except ArtifactError as exc:
                rows.append({"version": name, "error": str(exc)})
        return sorted(rows, key=lambda m: (str(m.get("created_at", "")), m["version"]))

    def entries(self, version: str) -> list[dict[str, Any]]:
        return [e for e in self.read_state()["history"] if e.get("version") == version]

    def lineage(self, state: dict[str, Any] | None = None) -> list[str]:
        """The champions in force, oldest first: promotions push, rollbacks pop."""
        state = state or self.read_state()
        stack: list[str] = []
        for entry in state["history"]:
            if entry.get("action") == "promote":
                stack.append(entry["version"])
            elif entry.get("action") == "rollback" and stack:
                stack.pop()
        if (stack[-1] if stack else None) != state["champion"]:
            raise RegistryError(f"{self.state_path}: champion {state['champion']!r} disagrees with its history "
                                f"(which ends with {stack[-1] if stack else None!r}); it was edited by hand")
        return stack

    # ------------------------------------------------------------ writing
    @contextlib.contextmanager
    def _locked(self, create: bool = False) -> Iterator[dict[str, Any]]:
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.state_path.exists():
            raise RegistryError(f"no registry at {self.root} ({REGISTRY_FILE} is missing); `triage retrain` creates one")
        with (self.root / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self.read_state()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _save_state(self, state: dict[str, Any]) -> None:
        _write_atomic(self.state_path, json.dumps(state, ensure_ascii=False, indent=2) + "\n")

    def _entry(self, action: str, version: str, previous: str | None, by: str | None,
               forced: bool = False, reason: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"at": _now(), "action": action, "version": version, "previous": previous,
                "forced": forced, "reason": reason, "by": by or current_user(), **extra}

    def fresh_version(self, base: str) -> str:
        """`base`, or `base-2`, `base-3` … when a version of that name is already registered."""
        version, n = base, 1
        while self.model_dir(version).exists():
            n += 1
            version = f"{base}-{n}"
        return version

    def register(self, model: TriageModel, metadata: dict[str, Any], report_html: str | None = None,
                 by: str | None = None) -> Path:
        """Write the artifact (and its report) as a new version; refuses to replace anything."""
        version = str(metadata["version"])
        with self._locked(create=True) as state:
            out = self.model_dir(version)
            report = self.report_path(version)
            if out.exists() or report.exists():
                raise RegistryError(f"version {version} is already registered in {self.root}; "
                                    "versions are never overwritten")
            self.models_dir.mkdir(parents=True, exist_ok=True)
            save_model(model, out, metadata)
            try:
                if report_html is not None:
                    self.reports_dir.mkdir(parents=True, exist_ok=True)
                    _write_atomic(report, report_html)
                state["history"].append(self._entry("register", version, state["champion"], by))
                self._save_state(state)
            except BaseException:
                shutil.rmtree(out, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    report.unlink()
                raise
        return out

    def promote(self, version: str, by: str | None = None, force: bool = False, reason: str | None = None,
                key_metrics: tuple[str, ...] | list[str] = DEFAULT_KEY_METRICS,
                tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
        """Make `version` the champion. Refused (PromotionRefused) when it was not compared
        with the current champion, or is worse on a key metric by more than `tolerance`,
        unless `force` with a reason, which is recorded."""
        reason = (reason or "").strip() or None
        if force and not reason:
            raise RegistryError("--force needs --reason: say why a worse or uncompared model goes into service")
        metadata = self.intact_metadata(version)
        with self._locked() as state:
            self.lineage(state)
            champion = state["champion"]
            if champion == version:
                raise RegistryError(f"{version} is already the champion")
            signed_with = (metadata.get(SIGNATURE) or {}).get("key_id")
            expected = self.key_id(champion) if champion is not None else None
            if expected is not None and signed_with != expected and not force:
                # The service loads the champion with the key the current one was signed with;
                # this version it would refuse, and keep serving the old one while the registry
                # named the new one.
                raise PromotionRefused(f"{version} was signed with key id {signed_with}, champion {champion} with "
                                       f"{expected}: a service that loads the champion could not load {version}. "
                                       "Sign it with the service's key (`triage sign --model DIR` with the service's "
                                       "TRIAGE_HOME), or promote with --force --reason after changing the key", [])
            checks: list[MetricCheck] = []
            evaluation = metadata.get("evaluation") or {}
            compared = evaluation.get("champion") or {}
            if champion is None and compared.get("in_service") and compared.get("metrics"):
                # The first promotion: checked against the model it takes over from, which
                # `triage retrain` scored in place of a champion (training/retrain.py).
                checks = compare(compared["metrics"], evaluation["challenger"]["metrics"], key_metrics, tolerance)
                worse = [c for c in checks if c.worse]
                if worse and not force:
                    raise PromotionRefused(f"{version} is worse than {compared['version']}, the model served while the "
                                           f"registry has no champion ({compared['in_service']}), which it would "
                                           f"replace: {_worse_detail(worse)}; promote with --force --reason to override",
                                           checks)
            elif champion is not None:
                if compared.get("version") != champion or not compared.get("metrics"):
                    against = compared.get("version") or "no champion"
                    problem = f" (it could not be scored: {compared['error']})" if compared.get("error") else ""
                    message = (f"{version} was evaluated against {against}{problem}, but the champion now is "
                               f"{champion}; retrain so both are scored on the same held-out petitions, "
                               "or promote with --force --reason")
                    if not force:
                        raise PromotionRefused(message, [])
                else:
                    checks = compare(compared["metrics"], evaluation["challenger"]["metrics"], key_metrics, tolerance)
                    worse = [c for c in checks if c.worse]
                    if worse and not force:
                        raise PromotionRefused(f"{version} is worse than champion {champion}: {_worse_detail(worse)}; "
                                               "promote with --force --reason to override", checks)
            if champion is None and compared.get("in_service"):
                champion = self._register_served_before(state, Path(compared["in_service"]))
            entry = self._entry("promote", version, champion, by, forced=force, reason=reason,
                                checks=[c.to_dict() for c in checks])
            state["champion"] = version
            state["history"].append(entry)
            self._save_state(state)
        return entry

    def _register_served_before(self, state: dict[str, Any], served: Path) -> str | None:
        """At the first promotion, the model the service served without a registry (which
        `triage retrain` scored in a champion's place) is registered and recorded as the
        champion before, so that `rollback` can put it back; the first champion had nothing
        to return to. Its version name, or None when it cannot be copied whole (the first
        promotion then goes on as before). Called holding the registry's lock."""
        try:
            metadata = read_metadata(served)
            if not _model_file_recorded(served, metadata):
                return None
        except (ArtifactError, OSError):
            return None
        name = str(metadata.get("version", ""))
        if not VERSION_NAME.match(name):
            return None
        if self.model_dir(name).exists():
            if self.metadata(name).get("model_sha256") != metadata.get("model_sha256"):
                return None
        else:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.models_dir))
            try:
                shutil.copytree(served, staging, dirs_exist_ok=True)
                os.replace(staging, self.model_dir(name))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            state["history"].append(self._entry("register", name, None, "triage"))
        state["history"].append(self._entry(
            "promote", name, None, "triage",
            reason=f"served from {served} before the registry had a champion; recorded so that rollback can restore it"))
        return name

    def rollback(self, by: str | None = None, reason: str | None = None) -> dict[str, Any]:
        """Restore the champion that the current one replaced."""
        with self._locked() as state:
            lineage = self.lineage(state)
            if not lineage:
                raise RegistryError(f"{self.root} has no champion; nothing to roll back")
            if len(lineage) < 2:
                raise RegistryError(f"{lineage[-1]} is the first champion of {self.root}; there is no previous "
                                    "one to restore")
            current, restored = lineage[-1], lineage[-2]
            self.intact_metadata(restored)  # its directory must still be there, its model whole
            entry = self._entry("rollback", restored, current, by, reason=(reason or "").strip() or None)
            state["champion"] = restored
            state["history"].append(entry)
            self._save_state(state)
        return entry
