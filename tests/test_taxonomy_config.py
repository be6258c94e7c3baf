from __future__ import annotations

import re
from pathlib import Path

import pytest

from model.taxonomy import DEFAULT_TAXONOMY, TaxonomyError, load_taxonomy

SHARED_TAXONOMY = Path(__file__).resolve().parents[2] / "shared" / "data" / "TAXONOMY.md"
DIVISIONS = ["employment", "pension", "resident_pension", "work_injury", "fund_supervision", "labor_relations",
             "labor_inspection", "arbitration", "public_institutions", "professional_titles", "wages_welfare",
             "vocational_skills", "talent_mobility", "exams", "service_conduct", "external"]
KEY_GROUPS = ["none", "unassigned_graduates", "retired_athletes", "minban_teachers", "military_cadres",
              "laid_off_workers", "family_workers", "land_lost_farmers"]


def test_codes_are_exactly_the_taxonomy(taxonomy):
    assert taxonomy.codes("division") == DIVISIONS
    assert taxonomy.codes("risk") == ["low", "medium", "high"]
    assert taxonomy.codes("key_group") == KEY_GROUPS


@pytest.mark.skipif(not SHARED_TAXONOMY.exists(), reason=f"needs {SHARED_TAXONOMY} (the shared folder) to compare")
def test_codes_match_the_shared_taxonomy_page(taxonomy):
    page = SHARED_TAXONOMY.read_text(encoding="utf-8")
    for code in DIVISIONS + KEY_GROUPS:
        assert re.search(rf"`{code}`", page), code


@pytest.mark.parametrize("rule", load_taxonomy().rules, ids=lambda r: r.id)
def test_every_rule_fires_on_its_example_and_not_on_its_counter_example(rule):
    assert rule.example and rule.counter_example, f"{rule.id} needs an example and a counter_example"
    assert rule.matches(rule.example), f"{rule.id} does not fire on its example"
    assert not rule.matches(rule.counter_example), f"{rule.id} fires on its counter_example"


def test_a_province_renames_a_division_without_code_changes(tmp_path):
    text = DEFAULT_TAXONOMY.read_text(encoding="utf-8").replace('name = "养老保险处"', 'name = "企业养老保险处"')
    path = tmp_path / "taxonomy.toml"
    path.write_text(text, encoding="utf-8")
    renamed = load_taxonomy(path)
    assert renamed.name_of("division", "pension") == "企业养老保险处"
    assert renamed.resolve("division", "企业养老保险处") == "pension"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace('code = "high"', 'code = "urgent"'), "risk_levels"),
    (lambda t: t.replace('patterns = ["跳楼"', 'patterns = ["(跳楼"'), "bad regular expression"),
    (lambda t: t.replace('label = "minban_teachers"', 'label = "teachers"'), "is not one of"),
    (lambda t: t + '\n[[divisions]]\ncode = "pension"\nname = "重复"\n', "more than once"),
])
def test_a_broken_config_is_refused_with_the_entry_named(tmp_path, edit, message):
    path = tmp_path / "taxonomy.toml"
    path.write_text(edit(DEFAULT_TAXONOMY.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(TaxonomyError, match=message):
        load_taxonomy(path)
