"""`python -m gedidata.offline`: make and serve the offline world by hand.

    python -m gedidata.offline gedi DIR --count 5 --year 2020 --shots-per-beam 1000
    python -m gedidata.offline world ROOT [--tile-size 109800]
    python -m gedidata.offline serve ROOT [--layout planetary-computer|earth-search]

`serve` runs the STAC API and the file server until interrupted and writes a source
profile (`ROOT/profile-<layout>.toml`) to pass to `create_dataset.py --source`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from gedidata.offline.gedi_granules import write_granules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gedidata.offline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    gedi = commands.add_parser("gedi", help="write GEDI L4A granules with the real layout")
    gedi.add_argument("directory", type=Path)
    gedi.add_argument("--count", type=int, default=5)
    gedi.add_argument("--year", type=int, default=2020)
    gedi.add_argument("--shots-per-beam", type=int, default=1000)
    gedi.add_argument("--seed", type=int, default=0)
    gedi.add_argument("--bbox", type=float, nargs=4, default=(-10.0, -10.0, 10.0, 10.0))
    world = commands.add_parser("world", help="write the default test world")
    world.add_argument("root", type=Path)
    world.add_argument(
        "--tile-size", type=float, default=None, help="metres of each MGRS tile to write"
    )
    serve = commands.add_parser("serve", help="serve a written world until interrupted")
    serve.add_argument("root", type=Path)
    serve.add_argument(
        "--layout", choices=("planetary-computer", "earth-search"), default="planetary-computer"
    )
    args = parser.parse_args(argv)

    if args.command == "gedi":
        paths = write_granules(
            args.directory,
            args.count,
            year=args.year,
            shots_per_beam=args.shots_per_beam,
            seed=args.seed,
            bbox=tuple(args.bbox),
        )
        print(f"wrote {len(paths)} granules to {args.directory}")
        return 0

    from gedidata.offline.world import default_test_world, load_world, write_world

    if args.command == "world":
        spec = default_test_world(args.root)
        if args.tile_size:
            spec = dataclasses.replace(spec, tile_size_m=args.tile_size)
        generated = write_world(spec)
        print(
            f"wrote {len(generated.scenes)} scenes, {len(generated.dem_tiles)} DEM tiles and "
            f"{len(generated.worldcover_tiles)} WorldCover tiles to {args.root}"
        )
        return 0

    from gedidata.offline.servers import serve_world
    from gedidata.sources.profiles import load_profile, profile_toml

    generated = load_world(args.root)
    layout = args.layout
    with serve_world(
        generated.root, generated.item_files(layout), generated.collection_files(layout)
    ) as served:
        base = load_profile(layout)
        profile = args.root / f"profile-{layout}.toml"
        offline = dataclasses.replace(
            base,
            name=f"offline-{layout}",
            stac_url=served.stac_url,
            signing="none",
            worldcover_collection="esa-worldcover",
            gdal_env={**base.gdal_env, **served.gdal_env},
        )
        profile.write_text(profile_toml(offline))
        print(f"STAC API: {served.stac_url}\nfiles:    {served.files_url}\nprofile:  {profile}")
        print("serving; press Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
