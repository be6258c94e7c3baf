"""One model in service in every worker: `triage serve` with two real uvicorn worker
processes on 127.0.0.1. A reload answered by one worker reaches the other within
seconds, /readyz and the suggestions agree, and a restart keeps the reloaded model."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from serving import ServeProcess, make_key, serve_env

from model.artifact import METADATA_FILE, sign_artifact
from service.app import create_app
from service.database import Database
from service.keys import create_key
from service.settings import Settings

PETITION = {"title": "老板拖欠工资", "body": "我在电子厂上班，老板三个月没发工资了。"}
FOLLOW_WITHIN_S = 10


def a_second_model(source: Path, target: Path, version: str) -> None:
    shutil.copytree(source, target)
    meta = json.loads((target / METADATA_FILE).read_text(encoding="utf-8"))
    meta["version"] = version
    (target / METADATA_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    sign_artifact(target)


def versions_seen(base: str, key: str, calls: int = 20) -> tuple[set[str], set[str]]:
    # A new connection per call: the kernel hands connections to either worker.
    triaged, ready = set(), set()
    for _ in range(calls):
        response = httpx.post(f"{base}/v1/triage", json=PETITION, headers={"X-API-Key": key}, timeout=30, trust_env=False)
        assert response.status_code == 200, response.text
        triaged.add(response.json()["model_version"])
        ready.add(httpx.get(f"{base}/readyz", timeout=30, trust_env=False).json()["model"])
    return triaged, ready


@pytest.fixture
def server(tmp_path: Path, small_model_dir: Path):
    root = tmp_path / "models"
    shutil.copytree(small_model_dir, root / "first")
    a_second_model(small_model_dir, root / "second", "second-model")
    env = serve_env(f"sqlite:///{tmp_path / 'triage.db'}", root / "first", tmp_path, workers="2",
                    model_root=str(root), model_poll_seconds="0.5", log_json="true")
    process = ServeProcess(tmp_path, env)
    try:
        yield process, env, tmp_path
    finally:
        process.kill()


def test_a_reload_reaches_every_worker_and_survives_a_restart(server, small_model_dir: Path):
    process, env, workdir = server
    process.start()
    process.wait_for_workers(2)
    intake, admin = make_key(env, workdir, "intake"), make_key(env, workdir, "admin")
    first = json.loads((small_model_dir / METADATA_FILE).read_text(encoding="utf-8"))["version"]
    assert versions_seen(process.base, intake, 6) == ({first}, {first})

    reloaded = httpx.post(f"{process.base}/v1/model/reload", json={"model_dir": "second"},
                          headers={"X-API-Key": admin}, timeout=60, trust_env=False)
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["version"] == "second-model"

    deadline = time.monotonic() + FOLLOW_WITHIN_S
    while time.monotonic() < deadline:
        followed = [json.loads(line) for line in process.log.read_text(encoding="utf-8").splitlines()
                    if line.startswith("{") and "as the database says" in line]
        if followed:
            break
        time.sleep(0.2)
    # The worker that answered the reload serves the model at once; the other one follows.
    assert len(followed) == 1, process.tail()
    assert versions_seen(process.base, intake) == ({"second-model"}, {"second-model"})

    process.stop()
    process.start()  # same TRIAGE_MODEL_DIR: the model in service is the database's, not it
    process.wait_for_workers(2)
    assert versions_seen(process.base, intake, 6) == ({"second-model"}, {"second-model"})


def test_reload_refuses_a_path_outside_the_model_root_and_the_old_model_keeps_serving(server, small_model_dir: Path):
    process, env, workdir = server
    process.start()
    admin = make_key(env, workdir, "admin")
    for outside in (str(small_model_dir), "../../", "/etc"):
        refused = httpx.post(f"{process.base}/v1/model/reload", json={"model_dir": outside},
                             headers={"X-API-Key": admin}, timeout=60, trust_env=False)
        assert refused.status_code == 422, refused.text
        assert "outside the model root" in refused.json()["detail"][0]["msg"]
    assert httpx.get(f"{process.base}/readyz", timeout=30, trust_env=False).json()["ready"] is True


def test_a_reloaded_model_is_not_loaded_again_by_the_same_workers_follower(tmp_path: Path, small_model_dir: Path):
    # A reload records the model in the database, then serves it. A check of the worker's
    # own follower landing in between found the row changed, loaded the model a second
    # time and logged that it followed the database.
    root = tmp_path / "models"
    shutil.copytree(small_model_dir, root / "first")
    a_second_model(small_model_dir, root / "second", "second-model")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'triage.db'}", model_dir=root / "first", model_root=root,
                        model_poll_seconds=3600)
    app = create_app(settings)
    with Database(settings.database_url).sessions() as session:
        admin = {"X-API-Key": create_key(session, "admin")}
    follower, models = app.state.model_follower, app.state.models
    serve, checked, polls = models.serve, [], []

    def serve_after_a_check_began(loaded):
        polls.append(threading.Thread(target=lambda: checked.append(follower.check())))
        polls[-1].start()
        polls[-1].join(1.0)  # the check runs now, unless the reload holds it off
        serve(loaded)

    models.serve = serve_after_a_check_began
    with TestClient(app) as client:
        answer = client.post("/v1/model/reload", json={"model_dir": "second"}, headers=admin)
    for poll in polls:
        poll.join(30)
    assert answer.status_code == 200 and answer.json()["version"] == "second-model"
    assert checked == [None] and models.current.version == "second-model"
