import json
from pathlib import Path

import pytest
from shapely.geometry import shape

from domain.paths import PROJECT_ROOT
from domain.registry import RegistryError, load
from simulators import registry_gen

REGISTRY = PROJECT_ROOT / "configs" / "registry"


def test_committed_registry_is_what_the_generator_makes(tmp_path):
    registry_gen.main(["--out", str(tmp_path)])
    for f in REGISTRY.glob("*.geojson"):
        assert (tmp_path / f.name).read_bytes() == f.read_bytes(), f.name


def test_demo_registry_has_gongshu_subjects_and_certified_devices():
    reg = load(REGISTRY)
    kinds = {}
    for s in reg.subjects:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    assert kinds == {"area": 18, "merchant": 1589, "site": 60, "permit": 40}
    by_kind = {}
    for d in reg.devices:
        by_kind[d.kind] = by_kind.get(d.kind, 0) + 1
    assert by_kind == {"fume": 1589, "dust": 60, "noise": 60, "cone_camera": 80, "drone": 20}
    for s in reg.subjects:
        c = shape(s.geometry).centroid
        assert 30.25 < c.y < 30.39 and 120.09 < c.x < 120.21, s.subject_id
    # frontages of one street do not overlap (a stall matches one merchant at most)
    merchants = [shape(s.geometry) for s in reg.subjects if s.kind == "merchant"][:200]
    assert all(not a.overlaps(b) for i, a in enumerate(merchants) for b in merchants[i + 1:])


def _write(tmp_path: Path, features: list[dict]) -> Path:
    (tmp_path / "merchants.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": features}))
    return tmp_path


POLY = {"type": "Polygon", "coordinates": [[[120.15, 30.32], [120.1501, 30.32],
                                            [120.1501, 30.3201], [120.15, 30.32]]]}
BOWTIE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}


@pytest.mark.parametrize("features, problem", [
    ([{"geometry": POLY, "properties": {"name": "x"}}], "properties.subject_id: missing"),
    ([{"geometry": POLY, "properties": {"subject_id": "M-1"}},
      {"geometry": POLY, "properties": {"subject_id": "M-1"}}], "duplicate 'M-1'"),
    ([{"geometry": BOWTIE, "properties": {"subject_id": "M-1"}}], "features[0].geometry"),
    ([{"geometry": POLY, "properties": {"subject_id": "M-1", "devices": [
        {"device_id": "FM-1", "kind": "fume", "certified_until": "2026-13-01"}]}}],
     "devices[0]"),
])
def test_registry_errors_name_file_and_feature(tmp_path, features, problem):
    with pytest.raises(RegistryError) as err:
        load(_write(tmp_path, features))
    assert any(p.startswith("merchants.geojson: features[") and problem in p
               for p in err.value.problems), err.value.problems
