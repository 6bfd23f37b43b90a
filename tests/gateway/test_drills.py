"""The drill catalog: the shipped file covers every focus and the seeds' domains with focuses
the database knows; `drills_file` replaces it; a broken file stops start-up in one line."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from db.focuses import list_focuses
from db.pool import Pool
from gateway.app import create_app
from gateway.auth import mint_token
from gateway.drills import Drill, DrillCatalog, load_catalog
from gateway.server import running_gateway
from gateway.settings import ConfigError
from streams.prompts import FOCUS_IDS
from tests.conftest import TEST_SECRET, make_settings
from tests.gateway.test_cli import command, env, refused, run
from tests.pg import database_dsn, migrated_pool, server_dsn

__all__ = ["database_dsn", "env", "migrated_pool", "server_dsn"]

SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

ONE_DRILL = """
[[drills]]
id = "bar-path-check"
title = "Check the bar path"
focus_ids = ["structure", "pacing"]
minutes = 7
description = "Film one set from the side and check the bar moves in a straight line."

[notes]
pacing = ["Slow down on the way down."]
"""


def write(tmp_path: Path, text: str, name: str = "drills.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_catalog_covers_every_focus_and_domain() -> None:
    catalog = load_catalog(None)
    assert 24 <= len(catalog.drills) <= 36
    assert len(catalog.ids) == len(catalog.drills)
    assert all(SLUG.match(d.id) and d.title and d.description for d in catalog.drills)
    assert all(1 <= d.minutes <= 60 for d in catalog.drills)
    assert all(len(catalog.for_focuses([f])) >= 3 for f in FOCUS_IDS)
    assert set(catalog.notes) == FOCUS_IDS
    words = " ".join(d.description.lower() for d in catalog.drills)
    for domain_word in ("speak", "scale", "metronome", "sing", "bar", "set", "rep"):
        assert domain_word in words, domain_word


def test_catalog_lookups() -> None:
    catalog = load_catalog(None)
    drill = catalog.get("tempo-reps")
    assert isinstance(drill, Drill) and drill.focus_ids == ("pacing",)
    assert catalog.get("no-such-drill") is None
    fillers = catalog.for_focuses(["filler_words"])
    assert fillers and all("filler_words" in d.focus_ids for d in fillers)
    assert catalog.for_focuses([]) == list(catalog.drills)
    body = catalog.to_json()
    assert [d["id"] for d in body["drills"]] == [d.id for d in catalog.drills]
    assert set(body["drills"][0]) == {"id", "title", "focus_ids", "minutes", "description"}
    assert DrillCatalog().ids == frozenset()


async def test_every_drill_focus_is_in_the_database(migrated_pool: Pool) -> None:
    stored = {f.id for f in await list_focuses(migrated_pool)}
    catalog = load_catalog(None)
    assert {f for d in catalog.drills for f in d.focus_ids} <= stored
    assert set(catalog.notes) <= stored
    assert stored >= FOCUS_IDS  # the list the catalog is checked against at start-up


def test_drills_file_replaces_the_shipped_catalog(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, ONE_DRILL))
    assert catalog.ids == {"bar-path-check"}
    drill = catalog.get("bar-path-check")
    assert drill is not None and drill.focus_ids == ("structure", "pacing") and drill.minutes == 7
    assert catalog.notes == {"pacing": ("Slow down on the way down.",)}


async def test_the_gateway_serves_the_configured_catalog(tmp_path: Path) -> None:
    settings = make_settings("http://127.0.0.1:9", tmp_path, drills_file=write(tmp_path, ONE_DRILL))
    auth = {"Authorization": f"Bearer {mint_token(TEST_SECRET, 'drill-user')}"}
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, headers=auth) as http,
    ):
        answered = await http.get("/v1/drills")
    assert answered.status_code == 200
    assert [d["id"] for d in answered.json()["drills"]] == ["bar-path-check"]


BROKEN = {
    "not TOML": ("[[drills]\nid = 1", "TOML syntax error"),
    "no drills": ("title = 'x'\n", "needs at least one [[drills]] table"),
    "unknown focus": (
        ONE_DRILL.replace('"structure", ', '"squats", '),
        'drill "bar-path-check" names an unknown focus "squats"',
    ),
    "duplicate id": (ONE_DRILL.split("[notes]")[0] * 2, 'drill id "bar-path-check" appears twice'),
    "missing field": (
        ONE_DRILL.replace("minutes = 7\n", ""),
        'drill "bar-path-check" is missing minutes',
    ),
    "bad minutes": (
        ONE_DRILL.replace("minutes = 7", "minutes = true"),
        "minutes must be a whole number",
    ),
    "bad id": (ONE_DRILL.replace("bar-path-check", "Bar Path"), "id must be a slug"),
    "empty focus list": (
        ONE_DRILL.replace('["structure", "pacing"]', "[]"),
        "focus_ids must be a non-empty list",
    ),
    "note of unknown focus": (
        ONE_DRILL.replace("pacing = [", "tempo = ["),
        '[notes] names an unknown focus "tempo"',
    ),
    "not UTF-8": ("\udcff", "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_catalog_is_one_line(case: str, tmp_path: Path) -> None:
    text, expected = BROKEN[case]
    path = tmp_path / "drills.toml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError) as raised:
        load_catalog(path)
    [line] = raised.value.problems
    assert "\n" not in line and expected in line, line
    assert line.startswith(f"drill catalog {path} (drills_file)")


def test_a_missing_catalog_stops_create_app(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as raised:
        create_app(make_settings("http://127.0.0.1:9", tmp_path, drills_file=missing))
    assert raised.value.problems == [f"drill catalog {missing} (drills_file) does not exist"]


def test_serve_refuses_a_broken_catalog_in_one_line(env: dict[str, str], tmp_path: Path) -> None:
    bad = write(tmp_path, ONE_DRILL.replace('"structure", ', '"squats", '))
    env |= {"COACH_JWT_SECRET": TEST_SECRET, "COACH_DRILLS_FILE": str(bad), "COACH_PORT": "0"}
    done: subprocess.CompletedProcess[str] = run(command("serve"), env, tmp_path)
    line = refused(done, 2)
    assert line.startswith(f"drill catalog {bad} (drills_file): ") and '"squats"' in line
