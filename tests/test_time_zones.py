"""Time: moments stored in UTC and written with an offset; `since`/`until` accept any
offset and mean the same instant on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from postgres_db import POSTGRES_PARAM, throwaway_database
from sqlalchemy import create_engine, text

from service.app import create_app
from service.database import Database
from service.keys import create_key
from service.settings import Settings

BEIJING = timezone(timedelta(hours=8))
URGENT = {"title": "讨薪无门", "body": "工资一直拿不到，再不解决我就从公司楼顶跳楼。",
          "received_at": "2026-12-06T09:00:00+08:00"}


@pytest.fixture(params=["sqlite", POSTGRES_PARAM])
def service(request, small_model_dir: Path, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'triage.db'}"
        else:
            url = stack.enter_context(throwaway_database("triage_tz")).render_as_string(hide_password=False)
        database = Database(url)
        database.migrate()
        with database.sessions() as session:
            keys = {role: create_key(session, role) for role in ("intake", "reviewer", "analyst")}
        database.engine.dispose()
        app = create_app(Settings(database_url=url, model_dir=small_model_dir))
        client = stack.enter_context(TestClient(app))
        yield client, keys, url
        app.state.database.engine.dispose()


def _offset_written(value: str) -> bool:
    return value.endswith("Z") or value[-6] in "+-"


def test_since_and_until_mean_the_same_instant_whatever_the_offset(service):
    client, keys, _ = service
    for _ in range(3):
        assert client.post("/v1/triage", json=URGENT, headers={"X-API-Key": keys["intake"]}).json()["stored"] is True
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    stats = lambda query: client.get(f"/v1/stats?{query}", headers={"X-API-Key": keys["analyst"]}).json()["suggestions"]  # noqa: E731
    same_instant = [hour_ago.isoformat().replace("+00:00", "Z"), hour_ago.astimezone(BEIJING).isoformat(),
                    hour_ago.astimezone(timezone(timedelta(hours=-5))).isoformat()]
    assert [stats(f"since={quote(s)}") for s in same_instant] == [3, 3, 3]
    # The "+" of an offset typed into a URL unencoded arrives as a space; it still means +08:00.
    assert stats("since=" + hour_ago.astimezone(BEIJING).isoformat().replace("+", "%20")) == 3
    later = datetime.now(UTC) + timedelta(minutes=30)
    assert stats(f"since={quote(later.astimezone(BEIJING).isoformat())}") == 0
    assert stats(f"until={quote(later.astimezone(BEIJING).isoformat())}") == 3
    assert stats(f"until={quote(hour_ago.astimezone(BEIJING).isoformat())}") == 0
    queue = client.get(f"/v1/review-queue?since={quote(hour_ago.astimezone(BEIJING).isoformat())}",
                       headers={"X-API-Key": keys["reviewer"]}).json()
    assert len(queue) == 3


def test_every_moment_is_written_with_an_offset_and_stored_in_utc(service):
    client, keys, url = service
    triaged = client.post("/v1/triage", json=URGENT, headers={"X-API-Key": keys["intake"]}).json()
    decided = client.post("/v1/decisions", json={"triage_id": triaged["triage_id"], "division": triaged["division"]["code"],
                                                 "decided_by": "受理员"}, headers={"X-API-Key": keys["intake"]}).json()
    queue = client.get("/v1/review-queue", headers={"X-API-Key": keys["reviewer"]}).json()
    assert _offset_written(decided["created_at"])
    assert queue and all(_offset_written(item["created_at"]) for item in queue)
    engine = create_engine(url)
    with engine.connect() as connection:
        received = connection.execute(text("SELECT received_at FROM triages")).scalar()
    engine.dispose()
    # 09:00 in Beijing is 01:00 UTC, whichever way the backend keeps it.
    if isinstance(received, str):
        assert received.startswith("2026-12-06 01:00:00")
    else:
        assert received.astimezone(UTC) == datetime(2026, 12, 6, 1, 0, tzinfo=UTC)


def test_a_received_at_without_an_offset_is_beijing_time(service):
    # A clerk's system writes the office's wall clock. Taken as UTC, a petition received at
    # 20:00 in Beijing was received at 04:00 the next day, and its deadlines fell a day late.
    client, keys, _ = service
    sent = lambda received_at: client.post("/v1/triage", json={**URGENT, "received_at": received_at},  # noqa: E731
                                           headers={"X-API-Key": keys["intake"]}).json()["time_limits"]
    evening = sent("2026-07-01T20:00:00")
    assert datetime.fromisoformat(evening["starts_at"]) == datetime(2026, 7, 1, 12, tzinfo=UTC)
    assert datetime.fromisoformat(evening["accept_by"]).astimezone(BEIJING).date().isoformat() == "2026-07-16"
    # A date alone is that day's midnight in Beijing, as the pages and ledgers read it.
    assert datetime.fromisoformat(sent("2026-07-01")["starts_at"]) == datetime(2026, 6, 30, 16, tzinfo=UTC)
    # An offset says which clock: "Z" is still UTC.
    assert datetime.fromisoformat(sent("2026-07-01T20:00:00Z")["starts_at"]) == datetime(2026, 7, 1, 20, tzinfo=UTC)


def test_since_and_until_without_an_offset_are_beijing_time(service):
    client, keys, _ = service
    for _ in range(3):
        assert client.post("/v1/triage", json=URGENT, headers={"X-API-Key": keys["intake"]}).json()["stored"] is True
    # The office's wall clock an hour ago, written without an offset: taken as UTC it was
    # seven hours ahead, and `since` found nothing triaged today while `until` found it all.
    hour_ago = (datetime.now(BEIJING) - timedelta(hours=1)).replace(tzinfo=None)
    stats = lambda query: client.get("/v1/stats", params=query, headers={"X-API-Key": keys["analyst"]}).json()["suggestions"]  # noqa: E731
    queue = lambda query: len(client.get("/v1/review-queue", params=query, headers={"X-API-Key": keys["reviewer"]}).json())  # noqa: E731
    for count in (stats, queue):
        assert count({"since": hour_ago.isoformat(timespec="minutes")}) == 3
        assert count({"until": hour_ago.isoformat(timespec="minutes")}) == 0
        # A date alone is that day's midnight in Beijing: today's petitions are since today.
        today = datetime.now(BEIJING).date()
        assert count({"since": today.isoformat()}) == 3
        assert count({"until": today.isoformat()}) == 0
        assert count({"until": (today + timedelta(days=1)).isoformat()}) == 3
    # An explicit offset keeps its meaning: the same wall clock in UTC is eight hours earlier.
    assert stats({"until": hour_ago.isoformat(timespec="minutes") + "Z"}) == 3


def test_a_time_written_with_a_space_is_not_taken_for_an_offset(service):
    # "2026-07-01 09:00" is how a spreadsheet or a database writes a time: its space is no
    # "+" lost in a URL, and read as one it made a date with an offset +09:00, refused.
    client, keys, _ = service
    assert client.post("/v1/triage", json=URGENT, headers={"X-API-Key": keys["intake"]}).json()["stored"] is True
    hour_ago = datetime.now(BEIJING) - timedelta(hours=1)
    answer = client.get("/v1/stats", params={"since": hour_ago.strftime("%Y-%m-%d %H:%M")}, headers={"X-API-Key": keys["analyst"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["suggestions"] == 1
    # The space of an offset's "+" typed unencoded is still read as the "+", with seconds or without.
    for written in (hour_ago.strftime("%Y-%m-%dT%H:%M:%S 08:00"), hour_ago.strftime("%Y-%m-%d %H:%M 08:00")):
        assert client.get(f"/v1/stats?since={quote(written)}", headers={"X-API-Key": keys["analyst"]}).json()["suggestions"] == 1


def test_the_contract_says_a_time_without_an_offset_is_beijing_time(service):
    client, _, _ = service
    spec = client.get("/openapi.json").json()
    described = [spec["components"]["schemas"]["PetitionIn"]["properties"]["received_at"]["description"]]
    for path, names in (("/v1/review-queue", ("since", "until")), ("/v1/stats", ("since", "until")), ("/v1/emerging", ("until",))):
        described += [p["description"] for p in spec["paths"][path]["get"]["parameters"] if p["name"] in names]
    assert len(described) == 6
    assert all("without one, Beijing time" in text for text in described), described
