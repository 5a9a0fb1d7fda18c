"""Study builder: sampling by ratio, content-addressed and blinded images, attention checks, assignments, hooks."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest
from PIL import Image

from eval_human.models import KIND_ATTENTION_CHECK
from eval_human.store import StudyError, StudyStore
from eval_human.study import (
    add_pairs_from_folder,
    allocate,
    build_study,
    load_pairs,
    parse_ratio,
    submit_generated_pair,
)


def _assignments(store, study_id):
    with store.engine.connect() as conn:
        from sqlalchemy import text

        return conn.execute(
            text(
                "SELECT a.rater_id, a.item_id, a.position, i.kind FROM assignments a "
                "JOIN items i ON i.id = a.item_id WHERE i.study_id = :s ORDER BY a.rater_id, a.position"
            ),
            {"s": study_id},
        ).all()


def test_load_pairs_reads_every_format(pair_sources, tmp_path):
    generated = load_pairs(pair_sources["medim"])
    assert len(generated) == 8 and {p.kind for p in generated} == {"generated"}
    assert generated[0].source["system"] == "medim" and generated[0].source["settings"] == {"steps": 8}
    real = load_pairs(pair_sources["real"].parent)  # corpus root: the test split is picked
    assert len(real) == 8 and {p.source["system"] for p in real} == {"real"}
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"id,image,report,domain\nm1,{generated[0].image_path},a report,pathology\n")
    (pair,) = load_pairs(manifest)
    assert pair.external_id == "m1" and pair.kind == "real" and pair.domain == "pathology"


@pytest.mark.parametrize(
    "content, message",
    [
        (
            '{"id": "x", "image": "images/none.png", "report": "r", "source": {"system": "s"}}',
            "does not exist",
        ),
        ('{"id": "x", "report": "r"}', "'image'"),
        ("not json", "not valid JSON"),
    ],
)
def test_load_pairs_rejects_bad_records(tmp_path, content, message):
    (tmp_path / "pairs.jsonl").write_text(content + "\n")
    with pytest.raises(StudyError, match=message):
        load_pairs(tmp_path)


def test_ratio_and_allocation():
    assert parse_ratio("3:1", 2) == [3.0, 1.0]
    assert allocate(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(allocate(7, [0.2, 0.5, 0.3])) == 7
    with pytest.raises(StudyError, match="2 parts for 3 sources"):
        parse_ratio("1:1", 3)
    with pytest.raises(StudyError, match="'a:b'"):
        parse_ratio("a:b", 2)


def test_build_study_mixes_blinds_and_assigns(built_study, pair_sources):
    store, built = built_study
    items = store.items_frame(built.study_id)
    regular = items[items["kind"] != KIND_ATTENTION_CHECK]
    assert Counter(regular["source_label"]) == {"medim": 4, "baseline": 4}  # ratio 1:1 of 8
    assert (regular["domain"].value_counts() > 0).all()
    # Content addressing: every stored file is named by the sha256 of its bytes, and carries no PNG text.
    for digest in items["image_sha256"]:
        path = store.image_path(digest)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        with Image.open(path) as image:
            assert "generator" not in image.info and not getattr(image, "text", {})
    # Attention checks: the report comes from another pair than the image.
    checks = items[items["kind"] == KIND_ATTENTION_CHECK]
    assert len(checks) == 2
    for source in checks["source"]:
        assert source["image_from"] != source["report_from"]
    # Assignments: overlap 2 for regular items, every rater sees every check, queues are per-rater shuffles.
    rows = _assignments(store, built.study_id)
    per_item = Counter(item for _, item, _, kind in rows if kind != KIND_ATTENTION_CHECK)
    assert set(per_item.values()) == {2} and len(per_item) == 8
    raters = [r.id for r in built.raters if r.role == "rater"]
    per_check = Counter(item for _, item, _, kind in rows if kind == KIND_ATTENTION_CHECK)
    assert set(per_check.values()) == {len(raters)}
    positions = {r: [p for rid, _, p, _ in rows if rid == r] for r in raters}
    assert all(p == list(range(len(p))) for p in positions.values())
    loads = [len(p) for p in positions.values()]
    assert max(loads) - min(loads) <= 1  # balanced distribution (16 regular slots + 2 checks each)
    # Checks are shuffled into the queues, not appended after the regular items.
    check_positions = [p for _, _, p, kind in rows if kind == KIND_ATTENTION_CHECK]
    assert min(check_positions) < min(loads) - 2


def test_build_study_is_reproducible_and_orders_differ_between_raters(tmp_path, pair_sources):
    orders = []
    for run in range(2):
        store = StudyStore(tmp_path / f"r{run}.db")
        built = build_study(
            store, "s", [pair_sources["medim"]], raters=["a", "b"], overlap=2, n_attention_checks=0, seed=5
        )
        rows = _assignments(store, built.study_id)
        external = dict(
            zip(
                store.items_frame(built.study_id)["item_id"], store.items_frame(built.study_id)["external_id"]
            )
        )
        orders.append(
            {rid: [external[i] for r, i, _, _ in rows if r == rid] for rid in {r for r, *_ in rows}}
        )
        store.dispose()
    assert orders[0] == orders[1]
    first, second = orders[0].values()
    assert sorted(first) == sorted(second) and first != second


def test_build_study_refuses_impossible_requests(tmp_path, pair_sources):
    store = StudyStore(tmp_path / "bad.db")
    with pytest.raises(StudyError, match="overlap=3 exceeds"):
        build_study(store, "a", [pair_sources["medim"]], raters=["x", "y"], overlap=3)
    with pytest.raises(StudyError, match="need 20 pairs"):
        build_study(store, "b", [pair_sources["medim"]], raters=["x"], overlap=1, n_items=20)
    with pytest.raises(StudyError, match="'chest_xray' pairs"):
        build_study(
            store,
            "c",
            [pair_sources["medim"]],
            raters=["x"],
            overlap=1,
            n_items=8,
            domain_ratio={"chest_xray": 1},
        )
    with pytest.raises(StudyError, match="distinct"):
        build_study(store, "d", [pair_sources["medim"]], raters=["x", "admin"], overlap=1)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "images").mkdir()
    (broken / "images" / "a.png").write_bytes(b"not a png")
    (broken / "pairs.jsonl").write_text(
        json.dumps({"image": "images/a.png", "report": "r", "source": {"system": "s"}})
    )
    with pytest.raises(StudyError, match="cannot read image"):
        build_study(store, "e", [broken], raters=["x"], overlap=1)
    assert store.items_frame(1).empty and store.items_frame(2).empty  # nothing half-built
    with pytest.raises(StudyError, match="no study named 'e'"):
        store.study_id_by_name("e")
    store.dispose()


def test_hooks_append_new_pairs_to_overlap_raters(built_study, pair_sources):
    store, built = built_study
    before = Counter(r for r, *_ in _assignments(store, built.study_id))
    image = Image.new("RGB", (16, 16), (1, 2, 3))
    source = {"system": "medim", "checkpoint": "demo.safetensors", "settings": {"steps": 12, "cfg": 2.0}}
    item_id = submit_generated_pair(store, built.study_id, image, "Small left effusion.", source)
    rows = _assignments(store, built.study_id)
    holders = [(r, p) for r, i, p, _ in rows if i == item_id]
    assert len(holders) == 2  # overlap
    for rater, position in holders:
        assert position == before[rater]  # appended at the end of that rater's queue
    stored = store.items_frame(built.study_id).set_index("item_id").loc[item_id]
    assert stored["source"] == source and stored["kind"] == "generated"
    new_ids = add_pairs_from_folder(store, built.study_id, pair_sources["real"], limit=3)
    assert len(new_ids) == 3
    assert set(store.items_frame(built.study_id).set_index("item_id").loc[new_ids, "kind"]) == {"real"}
    with pytest.raises(StudyError, match="'system'"):
        submit_generated_pair(store, built.study_id, image, "r", {"checkpoint": "x"})


def test_added_raters_get_a_fair_share(built_study):
    store, built = built_study
    (new,) = store.add_raters(built.study_id, ["late"])
    counts = store.assign_new_raters(built.study_id, [new.id])
    # 8 regular items * overlap 2 / 4 raters = 4, plus the 2 attention checks.
    assert counts == {new.id: 6}
    assert json.dumps(store.rater_item(new.id, 0).answers)  # reachable and empty
