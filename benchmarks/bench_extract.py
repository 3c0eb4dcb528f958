"""Benchmark stage 3 (extract) against the original tool's read strategy.

On one generated full-size Sentinel-2 scene (109.8 km MGRS tile, 1024-pixel COG tiles)
served over HTTP on 127.0.0.1, with its DEM and WorldCover tiles, and footprints on a
GEDI pass across it (8 beams; `--passes N` for more, 0 for footprints anywhere on it):

(a) the original strategy: one STAC search per footprint, then for every band
    `rasterio.open` + a whole-scene `WarpedVRT` and a window read (Sentinel-2 only);
(b) gedidata's extract with 2 worker processes, end to end (S2 + DEM + WorldCover +
    SCL checks + HDF5 batches).

Prints footprints/s, HTTP requests and bytes per footprint (from the file server's
log), STAC requests per footprint (through a counting proxy), the minimum bytes (the
unique internal COG tiles the windows touch), the largest worker's peak RSS (Linux
/proc) and a floor: the time 2 warm processes take to fetch and decode those tiles once
and do nothing else, which no extract on this machine can beat. Run by hand:

    python benchmarks/bench_extract.py [--footprints 2000] [--original-footprints 100]
        [--texture 300] [--passes 1] [--latency-ms 0] [--scaling N ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
import shapely
from pystac_client import Client
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from gedidata.config import PipelineConfig
from gedidata.domain.gedi import DELTA_TIME_EPOCH
from gedidata.domain.geometry import window_offsets
from gedidata.domain.schema import S2_BANDS
from gedidata.sources.profiles import BAND_RESOLUTION, PLANETARY_COMPUTER
from gedidata.stages.extract.driver import CLOUD_OPTIMIZED_GDAL, extract_split

if TYPE_CHECKING:
    import polars as pl

# (b)'s workers import this script again (as multiprocessing does for the main module),
# so polars and the offline world's modules, which extract's workers do not need, are
# imported where they are used: here they would add ~0.15 s to every worker's start.

PC = "planetary-computer"
TEXTURE_TAG = "GEDIDATA_BENCH_TEXTURE"


DEFAULT_TEXTURE_DN = 300


def add_texture(world, scene, amplitude: int = DEFAULT_TEXTURE_DN) -> None:
    """Give the scene's reflectance bands entropy: deterministic noise of +-`amplitude` DN
    (once per world directory).

    The generator's smooth ramps compress to ~8 kB per 1024 x 1024 tile, which makes
    any read strategy look cheap; real L2A tiles are ~1-2 MB, which +-300 DN gives.
    +-1 DN gives ~0.35 MB tiles (a 10 m tile is then fetched in fewer than the 128
    chunks /vsicurl/ grows a sequential read to, which shows read-ahead waste). Values
    are not checked here.
    """
    if amplitude == 0:
        return
    for index, band in enumerate(S2_BANDS[1:]):
        path = world.root / scene.asset_path(band, PC)
        with rasterio.open(path) as source:
            tags = source.tags()
            if tags.get(TEXTURE_TAG) == str(amplitude):
                continue
            data = source.read(1)
            profile = source.profile
        noise = np.random.default_rng(index).integers(-amplitude, amplitude + 1, data.shape)
        data = np.where(data == 0, 0, np.clip(data.astype(np.int32) + noise, 1, 65535))
        profile.update(driver="COG", compress="DEFLATE", predictor=2, blocksize=1024)
        for key in ("blockxsize", "blockysize", "tiled", "interleave"):
            profile.pop(key, None)
        temporary = path.with_name(f".{path.name}")
        with rasterio.open(temporary, "w", **profile) as target:
            target.write(data.astype(np.uint16), 1)
            # keep the generator's signature tag, so a re-run of write_world keeps the file
            target.update_tags(**tags, **{TEXTURE_TAG: str(amplitude)})
        temporary.replace(path)


GEDI_INCLINATION_DEG = 51.6
"""The ISS orbit's inclination: it sets the heading of GEDI's ground tracks."""
BEAM_OFFSETS_M = (np.arange(8) - 3.5) * 600.0
"""GEDI's 8 beams: parallel ground tracks ~600 m apart."""
SHOT_SPACING_M = 60.0
"""Along-track distance between two shots of one beam."""


def uniform_points(scene, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` points anywhere on the scene (400 m inside its valid footprint): the
    worst case for tile reuse, every internal tile holds a few windows."""
    west, south, east, north = scene.bounds
    ring = shapely.Polygon(scene.footprint_utm).buffer(-400)
    xs, ys = [], []
    while len(xs) < count:
        x, y = rng.uniform(west, east), rng.uniform(south, north)
        if ring.contains(shapely.Point(x, y)):
            xs.append(x)
            ys.append(y)
    return np.array(xs), np.array(ys)


def track_points(
    scene, count: int, passes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`count` shots on `passes` GEDI passes across the scene, in shot order (pass,
    beam, along the track): each pass is 8 beams 600 m apart with a shot every 60 m,
    heading as an orbit of 51.6 deg inclination crosses the scene's latitude (ascending
    or descending at random); `count` of all their shots inside the scene (400 m inside
    its valid footprint) are kept at random, as quality filters and the subset stage
    thin a real pass."""
    west, south, east, north = scene.bounds
    ring = shapely.Polygon(scene.footprint_utm).buffer(-400)
    _, latitude = scene.to_lonlat((west + east) / 2, (south + north) / 2)
    sine = np.cos(np.radians(GEDI_INCLINATION_DEG)) / np.cos(np.radians(latitude))
    azimuth = np.arcsin(min(1.0, sine))  # heading from north of an ascending track
    centre = np.array([(west + east) / 2, (south + north) / 2])
    half = np.hypot(east - west, north - south) / 2
    along_steps = np.arange(-half, half, SHOT_SPACING_M)
    shots_x, shots_y = [], []
    for _ in range(passes):
        heading = azimuth if rng.integers(2) else np.pi - azimuth  # ascending/descending
        along = np.array([np.sin(heading), np.cos(heading)])
        across = np.array([along[1], -along[0]])
        # the pass's centre line: anywhere that leaves the scene a few km of track
        origin = centre + across * rng.uniform(-0.4, 0.4) * (east - west)
        for offset in BEAM_OFFSETS_M:
            x = origin[0] + across[0] * offset + along[0] * along_steps
            y = origin[1] + across[1] * offset + along[1] * along_steps
            inside = shapely.contains_xy(ring, x, y)
            shots_x.append(x[inside])
            shots_y.append(y[inside])
    xs, ys = np.concatenate(shots_x), np.concatenate(shots_y)
    if len(xs) < count:
        raise SystemExit(f"{passes} passes have {len(xs):,} shots on the scene, < {count:,}")
    kept = np.sort(rng.choice(len(xs), count, replace=False))  # shot order
    return xs[kept], ys[kept]


def layout(passes: int) -> str:
    """Where `make_footprints` puts the footprints, in words."""
    return f"on {passes} GEDI pass{'es' * (passes > 1)} across" if passes else "anywhere on"


def make_footprints(
    scene, count: int, seed: int = 0, passes: int = 0, sample: int | None = None
) -> pl.DataFrame:
    """`count` footprints on the scene: anywhere (`passes` 0) or on GEDI passes; with
    `sample`, that many of them at random, still in shot order (for (a))."""
    import polars as pl

    rng = np.random.default_rng(seed)
    if passes:
        xs, ys = track_points(scene, count, passes, rng)
    else:
        xs, ys = uniform_points(scene, count, rng)
    if sample is not None:
        kept = np.sort(np.random.default_rng(seed + 1).choice(count, sample, replace=False))
        xs, ys, count = xs[kept], ys[kept], sample
    lons, lats = scene.to_lonlat(np.array(xs), np.array(ys))
    when = scene.datetime.astimezone(UTC)
    naive = when.replace(tzinfo=None)
    return pl.DataFrame(
        {
            "agbd": rng.uniform(10, 400, count).astype(np.float32),
            "agbd_se": rng.uniform(1, 20, count).astype(np.float32),
            "lon_lowestmode": lons,
            "lat_lowestmode": lats,
            "shot_number": np.arange(count, dtype=np.uint64) + 10**15,
            "delta_time": np.full(count, (when - DELTA_TIME_EPOCH).total_seconds()),
            "l2_quality_flag": np.ones(count, np.uint8),
            "l4_quality_flag": np.ones(count, np.uint8),
            "surface_flag": np.ones(count, np.uint8),
            "GEDI Filename": [f"GEDI04_A_{naive:%Y%j%H%M%S}_O01234_01_T00001_02_002_02_V002.h5"]
            * count,
            "acquisition_time": [naive] * count,
        }
    )


def needed_tiles(world, scene, frame: pl.DataFrame) -> dict[str, set[tuple[int, int]]]:
    """Per band, the internal tiles (row, column) the footprints' S2 windows touch."""
    xs, ys = scene.from_lonlat(
        frame["lon_lowestmode"].to_numpy(), frame["lat_lowestmode"].to_numpy()
    )
    grid10 = scene.transform("B02")
    cols, rows = window_offsets(np.asarray(xs), np.asarray(ys), grid10)
    needed = {}
    for band in S2_BANDS:
        factor = BAND_RESOLUTION[band] // 10
        margin = 0 if factor == 1 else 2
        with rasterio.open(world.root / scene.asset_path(band, PC)) as dataset:
            block = dataset.block_shapes[0][0]
            tiles = set()
            for col, row in zip(cols, rows, strict=True):
                c0, c1 = col // factor - margin, (col + 32 + factor - 1) // factor + margin
                r0, r1 = row // factor - margin, (row + 32 + factor - 1) // factor + margin
                for ti in range(max(r0, 0) // block, min(r1, dataset.height - 1) // block + 1):
                    for tj in range(max(c0, 0) // block, min(c1, dataset.width - 1) // block + 1):
                        tiles.add((ti, tj))
        needed[band] = tiles
    return needed


def minimum_bytes(world, scene, needed: dict[str, set[tuple[int, int]]]) -> int:
    """Bytes of the `needed` internal tiles (plus one header each)."""
    total = 0
    for band, tiles in needed.items():
        with rasterio.open(world.root / scene.asset_path(band, PC)) as dataset:
            total += sum(dataset.block_size(1, i, j) for i, j in tiles) + 16384
    return total


def _fetch_and_decode(job: tuple[dict[str, str | int], list[tuple[str, list[tuple[int, int]]]]]):
    """Worker of `floor_seconds`: open each URL, read the given internal tiles whole."""
    env, work = job
    if not work:  # warming up: let every process of the pool take one of these
        time.sleep(0.5)
    begin = time.monotonic()
    with rasterio.Env(**env):
        for url, tiles in work:
            with rasterio.open(url) as dataset:
                block = dataset.block_shapes[0][0]
                for i, j in sorted(tiles, reverse=True):
                    dataset.read(1, window=Window(j * block, i * block, block, block))
    return time.monotonic() - begin


def floor_seconds(scene, needed: dict[str, set[tuple[int, int]]], served, processes: int) -> float:
    """Wall time for `processes` warm processes to fetch over HTTP and decode every
    `needed` internal tile, once, and nothing else (each takes a band's tile
    columns west or east of its share): what no extract on this machine can beat."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    env = {**CLOUD_OPTIMIZED_GDAL, **served.gdal_env}
    shares: list[list[tuple[str, list[tuple[int, int]]]]] = [[] for _ in range(processes)]
    for band, tiles in needed.items():
        columns = sorted({j for _, j in tiles})
        url = f"{served.files_url}/{scene.asset_path(band, PC)}"
        for k in range(processes):
            part = set(columns[k * len(columns) // processes : (k + 1) * len(columns) // processes])
            shares[k].append((url, [tile for tile in tiles if tile[1] in part]))
    with ProcessPoolExecutor(processes, mp_context=get_context("forkserver")) as pool:
        list(pool.map(_fetch_and_decode, [({}, [])] * processes))  # start and import first
        begin = time.monotonic()
        list(pool.map(_fetch_and_decode, [(env, share) for share in shares]))
        return time.monotonic() - begin


def original_strategy(served, stac_url: str, scene, frame: pl.DataFrame) -> None:
    """One STAC search per footprint; per band open + whole-scene WarpedVRT + window read."""
    client = Client.open(stac_url)
    grid10 = scene.transform("B02")
    for row in frame.iter_rows(named=True):
        point = shapely.Point(row["lon_lowestmode"], row["lat_lowestmode"])
        when = row["acquisition_time"].replace(tzinfo=UTC)
        items = list(
            client.search(
                collections=["sentinel-2-l2a"], intersects=shapely.geometry.mapping(point),
                datetime=(when - timedelta(days=10), when + timedelta(days=10)),
            ).items_as_dicts()
        )  # fmt: skip
        item = min(items, key=lambda i: i["properties"]["eo:cloud_cover"])
        x, y = scene.from_lonlat(row["lon_lowestmode"], row["lat_lowestmode"])
        col, rowo = window_offsets(np.array([x]), np.array([y]), grid10)
        window = Window(int(col[0]), int(rowo[0]), 32, 32)
        for band in S2_BANDS:
            with (
                rasterio.open(item["assets"][band]["href"]) as src,
                WarpedVRT(src, crs=src.crs, transform=grid10, width=scene.shape("B02")[1],
                          height=scene.shape("B02")[0], resampling=Resampling.bilinear) as vrt,
            ):  # fmt: skip
                vrt.read(1, window=window)


def _peak_rss_kb(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class WorkerMemory:
    """Peak RSS (VmHWM) of extract's worker processes, polled from /proc (they are
    children of the fork server, out of reach of getrusage)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.peak_kb: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, args=(interval,), daemon=True)
        self.thread.start()

    def _poll(self, interval: float) -> None:
        # walks this process's descendants only (a glob over all of /proc at every poll
        # took a noticeable share of a core away from the workers being measured)
        # (the workers are the fork server's children: the fork server itself and the
        # resource tracker, this process's children, are not counted)
        while not self.stop.wait(interval):
            todo, seen = [(os.getpid(), 0)], set()
            while todo:
                pid, depth = todo.pop()
                if depth >= 2:
                    seen.add(pid)
                for children in Path(f"/proc/{pid}/task").glob("*/children"):
                    try:
                        found = [int(child) for child in children.read_text().split()]
                    except (OSError, ValueError):
                        continue
                    todo.extend((child, depth + 1) for child in found)
            for pid in seen:
                try:
                    if b"multiprocessing" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        continue
                    peak = _peak_rss_kb(pid)
                except OSError:
                    continue
                self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), peak)

    def largest_mb(self) -> float:
        self.stop.set()
        self.thread.join()
        return max(self.peak_kb.values(), default=0) / 1024


def report(name: str, count: int, seconds: float, log, mark: int, stac: int, prefix: str) -> float:
    entries = [e for e in log.entries(since=mark) if e["path"].startswith(prefix)]
    everything = log.entries(since=mark)
    rate = count / seconds
    print(
        f"{name}: {count} footprints in {seconds:.1f} s = {rate:,.1f} footprints/s; "
        f"Sentinel-2: {len(entries) / count:.1f} HTTP requests and "
        f"{sum(e['bytes'] for e in entries) / count / 1e3:,.1f} kB per footprint; "
        f"all files: {len(everything) / count:.1f} requests, "
        f"{sum(e['bytes'] for e in everything) / count / 1e3:,.1f} kB per footprint; "
        f"STAC requests per footprint: {stac / count:.4f}"
    )
    return sum(e["bytes"] for e in entries)


def run_gedidata(args, world, scene, served, proxy, count: int) -> dict[str, float]:
    """(b) on `count` footprints: prints its lines, returns its figures."""
    frame = make_footprints(scene, count, passes=args.passes)
    subset = args.workdir / "subset.csv"
    frame.write_csv(subset, separator=";")
    prefix = "/" + scene.asset_path("B02", PC).split("/")[0]
    needed = needed_tiles(world, scene, frame)
    minimum = minimum_bytes(world, scene, needed)
    log = served.file_server.log
    out = args.workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    profile = replace(PLANETARY_COMPUTER, stac_url=proxy.url, gdal_env=served.gdal_env)
    config = PipelineConfig(
        output_dir=out, batch_size=args.batch_size, num_processors=args.processes
    )
    mark, stac_before = log.mark(), proxy.requests
    # the main process extracts when the work is one run: its own peak from here on
    Path("/proc/self/clear_refs").write_text("5")  # (Linux: resets VmHWM)
    memory = WorkerMemory()
    begin = time.monotonic()
    # as the command line runs it: its own worker pool when there is more than one run
    result = extract_split(config, "train", subset, profile, progress=False)
    seconds = time.monotonic() - begin
    stac = proxy.requests - stac_before
    s2_bytes = report("(b) gedidata", count, seconds, log, mark, stac, prefix)
    rss = memory.largest_mb()
    if rss:
        who = f"{args.processes} worker processes; largest worker peak RSS {rss:,.0f} MB"
    else:
        rss = _peak_rss_kb() / 1024
        who = (f"one run, in the main process (no pool); its peak RSS {rss:,.0f} MB "
               "(with the benchmark's own data and GDAL's cache from (a))")  # fmt: skip
    print(
        f"(b) outcomes: {dict(result.outcomes)}; batch size {args.batch_size}, "
        f"{result.batches} batches, {who}"
    )
    print(
        f"minimum Sentinel-2 bytes (unique internal tiles + headers): "
        f"{minimum / count / 1e3:,.1f} kB per footprint; "
        f"(b) read {s2_bytes / minimum:.2f}x the minimum"
    )
    floor = floor_seconds(scene, needed, served, args.processes)
    print(
        f"floor: {args.processes} warm processes fetching and decoding those tiles once, "
        f"nothing else: {floor:.1f} s = {count / floor:,.0f} footprints/s "
        f"((b) takes {seconds / floor:.1f}x as long)"
    )
    return {"footprints": count, "rate": count / seconds, "bytes": s2_bytes / minimum,
            "stac": stac / count, "rss": rss, "floor": count / floor}  # fmt: skip


def plot_scaling(
    path: Path,
    rows: list[dict[str, float]],
    rate_a: float,
    processes: int,
    texture: int,
    passes: int,
) -> None:
    """Footprints/s of (b) against footprints per scene, beside 100x (a) and the floor."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    counts = [row["footprints"] for row in rows]
    axes.plot(counts, [row["rate"] for row in rows], "o-", label="(b) gedidata, end to end")
    floor = f"floor: {processes} processes fetching and decoding each needed tile once, no more"
    axes.plot(counts, [row["floor"] for row in rows], "--", color="grey", label=floor)
    if rate_a:
        axes.axhline(100 * rate_a, color="tab:red", linestyle=":",
                     label=f"target: 100x (a) = {100 * rate_a:,.0f} footprints/s")  # fmt: skip
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel(
        f"footprints {layout(passes)} one Sentinel-2 scene (109.8 km, bands +-{texture} DN)"
    )
    axes.set_ylabel("footprints/s")
    axes.set_title("bench_extract: extract throughput against footprint density")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    from gedidata.offline.servers import StacProxy, serve_world
    from gedidata.offline.world import SceneSpec, WorldSpec, write_world

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--footprints", type=int, default=2000)
    parser.add_argument("--original-footprints", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gedidata-bench-extract"))
    parser.add_argument(
        "--texture",
        type=int,
        default=DEFAULT_TEXTURE_DN,
        metavar="DN",
        help="noise added to the reflectance bands, +-DN (default 300: ~1.4 MB per internal "
        "tile, like real L2A; 1: ~0.35 MB; 0: the generator's smooth bands, ~8 kB)",
    )
    parser.add_argument(
        "--passes",
        type=int,
        default=1,
        metavar="N",
        help="footprints on N GEDI passes across the scene (8 beams 600 m apart, a shot "
        "every 60 m, thinned at random to --footprints; default 1), or 0: anywhere on "
        "it, the worst case for tile reuse",
    )
    parser.add_argument(
        "--scaling",
        type=int,
        nargs="+",
        metavar="N",
        help="run (b) for each of these footprint counts and plot footprints/s (--plot)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay every file request by this much, as a distant object store would "
        "(default 0: loopback)",
    )
    parser.add_argument("--plot", type=Path, default=Path("plots/bench_extract_scaling.png"))
    args = parser.parse_args()

    started = time.monotonic()
    spec = WorldSpec(
        args.workdir / f"world-texture-{args.texture}",
        [SceneSpec("32TMT", datetime(2021, 7, 3, 10, 30, tzinfo=UTC), cloud_cover=3.0,
                   processing_baseline="05.00")],
        worldcover_years=(2021,),
    )  # fmt: skip
    world = write_world(spec)
    scene = world.scenes[0]
    add_texture(world, scene, args.texture)
    print(
        f"world ready in {time.monotonic() - started:.0f} s: {scene.id}, "
        f"bands with +-{args.texture} DN of noise; footprints {layout(args.passes)} it"
    )

    with serve_world(world.root, world.item_files(PC), world.collection_files(PC)) as served:
        proxy = StacProxy(served.stac_url)
        if args.latency_ms:
            served.file_server.delay("/", args.latency_ms / 1000, count=2**62)
        try:
            log = served.file_server.log
            env = {**CLOUD_OPTIMIZED_GDAL, **served.gdal_env}
            # (a) on footprints like (b)'s: with --passes, a random few of the same
            # passes' shots, in shot order (the order the original tool reads a CSV in)
            original = (
                make_footprints(scene, args.footprints, passes=args.passes,
                                sample=args.original_footprints)
                if args.passes
                else make_footprints(scene, args.original_footprints)
            )  # fmt: skip
            prefix = "/" + scene.asset_path("B02", PC).split("/")[0]
            rate_a = 0.0
            if original.height:  # --original-footprints 0 skips (a)
                mark, stac_before = log.mark(), proxy.requests
                begin = time.monotonic()
                with rasterio.Env(**env):
                    original_strategy(served, proxy.url, scene, original)
                seconds_a = time.monotonic() - begin
                rate_a = original.height / seconds_a
                report("(a) original", original.height, seconds_a, log, mark,
                       proxy.requests - stac_before, prefix)  # fmt: skip
            rows = [
                run_gedidata(args, world, scene, served, proxy, count)
                for count in (args.scaling or [args.footprints])
            ]
            if rate_a:
                for row in rows:
                    print(f"speed-up (b)/(a) at {row['footprints']:,} footprints: "
                          f"{row['rate'] / rate_a:,.0f}x; the floor is "
                          f"{row['floor'] / rate_a:,.0f}x (a)")  # fmt: skip
        finally:
            proxy.close()
    if args.scaling:
        # (peak RSS: the largest worker's, or the main process's when it was one run)
        print("footprints  footprints/s  floor fp/s  bytes/minimum  STAC/footprint  peak RSS MB")
        for row in rows:
            print(f"{row['footprints']:>10,}  {row['rate']:>12,.1f}  {row['floor']:>10,.0f}  "
                  f"{row['bytes']:>13.2f}  {row['stac']:>14.4f}  {row['rss']:>13,.0f}")  # fmt: skip
        plot_scaling(args.plot, rows, rate_a, args.processes, args.texture, args.passes)


if __name__ == "__main__":
    main()
