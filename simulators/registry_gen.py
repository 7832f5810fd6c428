"""Generate the demo registry of Gongshu district, Hangzhou (fixed seed, reproducible).

    python -m simulators.registry_gen [--out configs/registry] [--seed 20261127]

Writes areas, streets, merchants (1,589 restaurants, each with its fume monitor),
construction sites (dust and boundary-noise monitors), road-works permits (cone cameras) and the drone fleet
as GeoJSON FeatureCollections. Streets run east-west and north-south on a grid around
30.32 N, 120.15 E; shops line both sides, each with a frontage zone: the pavement in front
of the shop, where street vending is looked for. Names and places are invented.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from datetime import date, timedelta
from pathlib import Path

from domain.geo import GONGSHU, LocalFrame

SEED = 20261127
MERCHANTS = 1589
FRAME = LocalFrame(*GONGSHU)

# The 18 sub-districts of Gongshu; laid out on a 6 x 3 grid for the demo.
AREA_NAMES = [
    ("AR-01", "米市巷街道"), ("AR-02", "湖墅街道"), ("AR-03", "小河街道"),
    ("AR-04", "拱宸桥街道"), ("AR-05", "和睦街道"), ("AR-06", "大关街道"),
    ("AR-07", "上塘街道"), ("AR-08", "祥符街道"), ("AR-09", "康桥街道"),
    ("AR-10", "半山街道"), ("AR-11", "天水街道"), ("AR-12", "武林街道"),
    ("AR-13", "长庆街道"), ("AR-14", "朝晖街道"), ("AR-15", "潮鸣街道"),
    ("AR-16", "文晖街道"), ("AR-17", "东新街道"), ("AR-18", "石桥街道"),
]
AREA_W, AREA_H = 1500.0, 2000.0  # metres
GRID_X0, GRID_Y0 = -4500.0, -3000.0

# Street geometry (metres from the centreline): carriageway, pavement, shop fronts.
ROAD_HALF_WIDTH = 6.0
PAVEMENT = 4.0
SHOP_WIDTH = 10.0
SHOP_DEPTH = 12.0

DISHES = ["面馆", "小笼包", "烧烤", "火锅", "川菜馆", "杭帮菜", "快餐", "馄饨店", "酒家", "粥铺",
          "烤鸭", "麻辣烫", "牛肉粉", "饺子馆", "茶餐厅", "湘菜馆"]
SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "胡", "朱",
            "高", "林", "何", "郭", "马", "罗"]
STREET_WORDS = ["湖墅", "大关", "莫干山", "上塘", "丽水", "小河", "登云", "和睦", "信义", "香积寺",
                "台州", "舟山东", "萍水", "文一", "潮王", "朝晖", "建国北", "中山北", "环城北",
                "东新", "石祥", "半山", "康桥", "拱康", "祥园", "红石板", "长乐", "沈塘"]

CERTIFIED_FROM = date(2026, 1, 1)


def _poly(points_local: list[tuple[float, float]]) -> dict:
    ring = [list(reversed(FRAME.to_wgs84(e, n))) for e, n in points_local]
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [[[round(x, 7), round(y, 7)] for x, y in ring]]}


def _point(e: float, n: float) -> dict:
    lat, lon = FRAME.to_wgs84(e, n)
    return {"type": "Point", "coordinates": [round(lon, 7), round(lat, 7)]}


def _line(points_local: list[tuple[float, float]]) -> dict:
    return {"type": "LineString", "coordinates": [
        [round(lon, 7), round(lat, 7)] for lat, lon in (FRAME.to_wgs84(e, n) for e, n in points_local)]}


def _feature(geometry: dict, **props) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": props}


def _device(rng: random.Random, device_id: str, kind: str, model: str, lapsed: bool) -> dict:
    calibrated_on = CERTIFIED_FROM + timedelta(days=rng.randrange(0, 200))
    due = calibrated_on + timedelta(days=365)
    if lapsed:  # a few devices whose calibration ran out before the demo period
        calibrated_on = date(2025, 3, 1) + timedelta(days=rng.randrange(0, 60))
        due = calibrated_on + timedelta(days=365)
    return {
        "device_id": device_id, "kind": kind, "model": model,
        "certificate_no": f"CPA-{rng.randrange(10**7, 10**8)}",
        "certified_from": CERTIFIED_FROM.isoformat(),
        "certified_until": date(2028, 12, 31).isoformat(),
        "calibrated_on": calibrated_on.isoformat(), "calibration_due": due.isoformat(),
    }


def _area_of(e: float, n: float) -> str:
    col = min(5, max(0, int((e - GRID_X0) // AREA_W)))
    row = min(2, max(0, int((n - GRID_Y0) // AREA_H)))
    return AREA_NAMES[row * 6 + col][0]


def generate(seed: int = SEED) -> dict[str, dict]:
    rng = random.Random(seed)
    # Noise monitors were added later: their own random stream leaves every other device
    # and place as it was.
    noise_rng = random.Random(seed + 1)
    areas, streets, merchants, sites, permits = [], [], [], [], []

    for i, (area_id, name) in enumerate(AREA_NAMES):
        x0, y0 = GRID_X0 + (i % 6) * AREA_W, GRID_Y0 + (i // 6) * AREA_H
        areas.append(_feature(_poly([(x0, y0), (x0 + AREA_W, y0), (x0 + AREA_W, y0 + AREA_H),
                                     (x0, y0 + AREA_H)]), subject_id=area_id, kind="area",
                              name=name, area_id=area_id, devices=[]))

    # Streets: every 500 m east-west and north-south, 400-900 m long segments of them.
    street_no = 0
    street_defs = []
    for axis in ("ew", "ns"):
        span = range(-2750, 3000, 500) if axis == "ew" else range(-4250, 4500, 500)
        for c in span:
            lo = rng.uniform(-4000, 2500) if axis == "ew" else rng.uniform(-2700, 1800)
            length = rng.uniform(400, 900)
            street_no += 1
            sid = f"ST-{street_no:03d}"
            word = STREET_WORDS[street_no % len(STREET_WORDS)]
            name = f"{word}{'路' if axis == 'ew' else '街'}{street_no}"
            a, b = ((lo, c), (lo + length, c)) if axis == "ew" else ((c, lo), (c, lo + length))
            street_defs.append((sid, name, axis, a, b))
            streets.append(_feature(_line([a, b]), street_id=sid, name=name, axis=axis,
                                    half_width_m=ROAD_HALF_WIDTH, pavement_m=PAVEMENT))

    # Merchants along both sides of the streets until there are 1,589.
    count = 0
    for sid, sname, axis, a, b in street_defs:
        length = abs(b[0] - a[0]) + abs(b[1] - a[1])
        slots = int(length // SHOP_WIDTH)
        for side in (1, -1):
            for k in range(slots):
                if count >= MERCHANTS:
                    break
                if rng.random() < 0.45:  # not every shop front is a restaurant
                    continue
                count += 1
                mid = f"M-{count:05d}"
                s0, s1 = k * SHOP_WIDTH + 0.5, (k + 1) * SHOP_WIDTH - 0.5

                def at(s: float, off: float, axis=axis, a=a, side=side) -> tuple[float, float]:
                    return (a[0] + s, a[1] + side * off) if axis == "ew" else (
                        a[0] + side * off, a[1] + s)

                curb, facade = ROAD_HALF_WIDTH, ROAD_HALF_WIDTH + PAVEMENT
                frontage = _poly([at(s0, curb), at(s1, curb), at(s1, facade), at(s0, facade)])
                shop = at((s0 + s1) / 2, facade + SHOP_DEPTH / 2)
                stoves = rng.choice([1, 1, 2, 2, 3, 4, 5, 6, 8])
                size = "small" if stoves <= 2 else "medium" if stoves <= 5 else "large"
                lunch = rng.choice(["10:30", "11:00"])
                hours = [f"{lunch}-14:00", f"{rng.choice(['16:30', '17:00'])}-"
                         f"{rng.choice(['21:00', '21:30', '22:30'])}"]
                if rng.random() < 0.12:
                    hours.append("22:30-02:00")  # late-night stalls
                e, n = shop
                name = f"{rng.choice(SURNAMES)}记{rng.choice(DISHES)}"
                merchants.append(_feature(
                    frontage, subject_id=mid, kind="merchant", name=name,
                    area_id=_area_of(e, n), street_id=sid,
                    address=f"{sname}{k * 2 + (1 if side > 0 else 2)}号",
                    shop=_point(e, n)["coordinates"], stoves=stoves, size=size,
                    business_hours=hours,
                    devices=[_device(rng, f"FM-{count:05d}", "fume", "YQ-3000",
                                     lapsed=count % 97 == 13)]))
        if count >= MERCHANTS:
            break
    if count < MERCHANTS:
        raise RuntimeError(f"streets hold only {count} restaurants, need {MERCHANTS}")

    for i in range(1, 61):
        e, n = rng.uniform(-4300, 4300), rng.uniform(-2800, 2800)
        w, h = rng.uniform(60, 220), rng.uniform(60, 220)
        sid = f"S-{i:03d}"
        sites.append(_feature(
            _poly([(e, n), (e + w, n), (e + w, n + h), (e, n + h)]), subject_id=sid,
            kind="site", name=f"{rng.choice(STREET_WORDS)}地块{i}号项目", area_id=_area_of(e, n),
            contractor=f"浙江{rng.choice(SURNAMES)}氏建设有限公司", background_pm10_ug_m3=60,
            devices=[_device(rng, f"DM-{i:03d}", "dust", "HJ653-PM", lapsed=i % 29 == 7),
                     _device(noise_rng, f"NM-{i:03d}", "noise", "AWA6228-B",
                             lapsed=i % 31 == 9)]))

    # Road-works permits: a stretch of carriageway of a street, cone cameras at both ends.
    for i in range(1, 41):
        sid_, sname, axis, a, b = street_defs[rng.randrange(len(street_defs))]
        length = abs(b[0] - a[0]) + abs(b[1] - a[1])
        s0 = rng.uniform(20, length - 60)
        s1 = s0 + rng.uniform(20, 40)
        side = rng.choice([1, -1])

        def on(s: float, off: float, axis=axis, a=a, side=side) -> tuple[float, float]:
            return (a[0] + s, a[1] + side * off) if axis == "ew" else (a[0] + side * off, a[1] + s)

        pid = f"P-{i:03d}"
        night = i % 5 == 0
        e, n = on((s0 + s1) / 2, ROAD_HALF_WIDTH / 2)
        permits.append(_feature(
            _poly([on(s0, 0.0), on(s1, 0.0), on(s1, ROAD_HALF_WIDTH), on(s0, ROAD_HALF_WIDTH)]),
            subject_id=pid, kind="permit", name=f"{sname}管线施工{i}", area_id=_area_of(e, n),
            street_id=sid_, permit_no=f"GS-XK-2026-{i:04d}",
            valid_from="2026-09-01", valid_until="2027-03-31",
            hours=["22:00-05:00"] if night else ["09:00-17:00"],
            devices=[_device(rng, f"CC-{i:03d}-{j}", "cone_camera", "XG-Cone-4G",
                             lapsed=False) | {"position": _point(*on(s, ROAD_HALF_WIDTH + 0.5))["coordinates"]}
                     for j, s in ((1, s0 - 3), (2, s1 + 3))]))

    docks = []
    for i in range(1, 21):
        k = (i - 1) % len(areas)
        area = areas[k]
        # each drone waits on a dock in the middle of its sub-district; a ground station
        # reaches it at `connection` (a MAVLink connection string, as dronekit takes it)
        dock = (GRID_X0 + (k % 6 + 0.5) * AREA_W + (60.0 if i > len(areas) else 0.0),
                GRID_Y0 + (k // 6 + 0.5) * AREA_H)
        docks.append(dock)
        area["properties"]["devices"].append(
            _device(rng, f"UAV-{i:02d}", "drone", "M30T", False)
            | {"connection": f"udp:127.0.0.1:{14550 + i}", "dock": _point(*dock)["coordinates"],
               "endurance_min": 40, "cruise_ms": 10.0, "hfov_deg": 84.0})
    nofly = _no_fly_zones(random.Random(seed + 1), docks)

    def fc(features: list[dict]) -> dict:
        return {"type": "FeatureCollection", "features": features}

    return {"areas": fc(areas), "streets": fc(streets), "merchants": fc(merchants),
            "sites": fc(sites), "permits": fc(permits), "nofly": fc(nofly)}


NO_FLY_KINDS = [("hospital", "医院"), ("school", "中学"), ("school", "小学"), ("hospital", "中医院"),
                ("kindergarten", "幼儿园"), ("school", "实验学校"), ("hospital", "妇幼保健院"),
                ("government", "区政府")]


def _no_fly_zones(rng: random.Random, docks: list[tuple[float, float]]) -> list[dict]:
    """No-fly zones around hospitals, schools and offices: circles (as 24-gons), none over a dock."""
    zones = []
    for i, (kind, word) in enumerate(NO_FLY_KINDS, start=1):
        while True:
            e, n = rng.uniform(-4300, 4300), rng.uniform(-2800, 2800)
            radius = rng.choice([150.0, 200.0, 250.0])
            if all((e - de) ** 2 + (n - dn) ** 2 > (radius + 300) ** 2 for de, dn in docks):
                break
        ring = [(e + radius * math.cos(2 * math.pi * k / 24), n + radius * math.sin(2 * math.pi * k / 24))
                for k in range(24)]
        zones.append(_feature(_poly(ring), zone_id=f"NFZ-{i:02d}", kind=kind,
                              name=f"{rng.choice(STREET_WORDS)}{word}", radius_m=radius,
                              floor_m=0, ceiling_m=120))
    return zones


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="configs/registry")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, collection in generate(args.seed).items():
        (out / f"{name}.geojson").write_text(
            json.dumps(collection, ensure_ascii=False, separators=(",", ":")) + "\n",
            encoding="utf-8")
        print(f"{name}: {len(collection['features'])}")


if __name__ == "__main__":
    main()
