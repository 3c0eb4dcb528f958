"""Synthetic GEDI L4A granules with the layout of the real product.

Tests, the demo and the benchmarks run offline, so they need granules that look like the
ones NASA distributes: the same groups (`ANCILLARY`, `METADATA/DatasetIdentification`,
`BEAM0000` … `BEAM1011` with their `agbd_prediction`, `geolocation` and
`land_cover_data` sub-groups), the same dataset names, dtypes, attributes, chunking
(`(14200,)`) and compression (gzip level 4), and values that behave like real ones:

- `shot_number` = orbit·10¹³ + beam·10¹¹ + sub-orbit granule·10⁸ + index, with the beam
  number `int(beam_name[4:], 2)` also stored in `beam`;
- `delta_time` starts a few seconds after the acquisition time of the file name and
  grows by 0.008264 s per shot along a beam;
- the eight beams run as parallel ground tracks inside a requested bounding box;
- `agbd` is log-normal, `agbd_se`, `agbd_t`, `agbd_t_se` and the prediction intervals
  follow the square-root model of the product (`agbd = bias · agbd_t²`,
  `agbd_se = bias · agbd_t_se²`), so low-biomass shots of a stratum with a large
  standard error have a relative standard error above 50 % as in real data;
- exactly `round(pass_fraction · n)` shots of a beam pass the quality flags
  (`l2_quality_flag == l4_quality_flag == 1`; these also have `surface_flag == 1`,
  `degrade_flag == 0` and valid positive `agbd`/`agbd_se`) and exactly
  `round(fill_fraction · n)` are fill shots (`agbd`, `agbd_se`, … = -9999,
  `l2_quality_flag == l4_quality_flag == algorithm_run_flag == 0`); the remaining
  shots fail the quality flags (some with `surface_flag == 0` or `degrade_flag != 0`).

Nothing here reads the real files: the layout is written down below.

Writing is fast enough for benchmarks (a 500,000-shot granule in a couple of seconds):
arrays are generated vectorised, each distinct array is compressed once with zlib and
its chunks are written with `write_direct_chunk` to every dataset that holds it (the
per-algorithm datasets of `agbd_prediction` and `geolocation` repeat the top-level
values, as the selected algorithm does in the real product).
"""

from __future__ import annotations

import os
import uuid
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gedidata.domain.gedi import (
    BEAM_NAMES,
    COVERAGE_BEAMS,
    DELTA_TIME_EPOCH,
    FILL_VALUE,
    format_granule_name,
)

__all__ = [
    "ALGORITHMS",
    "CHUNK_SIZE",
    "GZIP_LEVEL",
    "SHOT_INTERVAL",
    "SUB_ORBIT_GRANULE",
    "shot_fields",
    "truncate_file",
    "write_granule",
    "write_granules",
    "write_non_l4a_granule",
]

CHUNK_SIZE = 14200
"""Chunk length of every per-shot dataset of the real product (also when it has fewer shots)."""

GZIP_LEVEL = 4
"""Deflate level of the real product."""

SHOT_INTERVAL = 0.008264
"""Seconds between two consecutive shots of one beam."""

SUB_ORBIT_GRANULE = 1
"""Sub-orbit granule number encoded in shot numbers (the `_01_` of `format_granule_name`)."""

ALGORITHMS: tuple[str, ...] = ("a1", "a2", "a3", "a4", "a5", "a6", "a10")
"""Suffixes of the per-algorithm datasets (`agbd_a1`, …): the seven L2A setting groups."""

BBox = tuple[float, float, float, float]

# --------------------------------------------------------------------------------------
# Layout of the real product (GEDI04_A V002), written down from real granules.
# --------------------------------------------------------------------------------------

_C3 = "delta_time lat_lowestmode lon_lowestmode"
_UP_C3 = "../delta_time ../lat_lowestmode ../lon_lowestmode"
_SENSITIVITY_DESCRIPTION = (
    "Maxmimum canopy cover that can be penetrated considering the SNR of the waveform"
)
_RUN_FLAG_DESCRIPTION = (
    "The L4A algorithm is run if this flag is set to 1. This flag selects data which have "
    "sufficient waveform fidelity for AGBD estimation."
)
_ELEV_DESCRIPTION = "Elevation of center of lowest mode relative to reference ellipsoid"
_T_SE_DESCRIPTION = (
    "Model prediction standard error in fit units "
    "(needed for calculation of custom prediction intervals)"
)

Attrs = dict[str, Any]

_BEAM_FIELDS: dict[str, tuple[str, Attrs]] = {
    "agbd": (
        "float32",
        {
            "coordinates": _C3,
            "description": "Aboveground biomass density (Mg / ha)",
            "long_name": "Aboveground biomass density",
            "units": "Mg / ha",
        },
    ),
    "agbd_pi_lower": (
        "float32",
        {
            "coordinates": _C3,
            "description": "Lower prediction interval (see alpha attribute for the level)",
            "long_name": "Aboveground biomass density lower prediction interval",
            "units": "Mg / ha",
        },
    ),
    "agbd_pi_upper": (
        "float32",
        {
            "coordinates": _C3,
            "description": "Upper prediction interval (see alpha attribute for the level)",
            "long_name": "Aboveground biomass density upper prediction interval",
            "units": "Mg / ha",
        },
    ),
    "agbd_se": (
        "float32",
        {
            "coordinates": _C3,
            "description": "Aboveground biomass density (Mg / ha) prediction standard error",
            "long_name": "Aboveground biomass density prediction standard error",
            "units": "Mg / ha",
        },
    ),
    "agbd_t": (
        "float32",
        {
            "coordinates": _C3,
            "description": "Model prediction in fit units",
            "long_name": "Model prediction",
            "units": "-",
        },
    ),
    "agbd_t_se": (
        "float32",
        {
            "coordinates": _C3,
            "description": _T_SE_DESCRIPTION,
            "long_name": "Model prediction standard error",
            "units": "-",
        },
    ),
    "algorithm_run_flag": (
        "uint8",
        {
            "coordinates": _C3,
            "description": _RUN_FLAG_DESCRIPTION,
            "long_name": "Algorithm run flag",
            "units": "-",
        },
    ),
    "beam": (
        "uint16",
        {
            "description": "Beam identifier",
            "long_name": "Beam",
            "source": "L2A",
            "units": "-",
            "valid_range": (0, 12),
        },
    ),
    "channel": (
        "uint8",
        {
            "description": "Channel identifier",
            "long_name": "Channel",
            "source": "L2A",
            "units": "-",
            "valid_range": (0, 6),
        },
    ),
    "degrade_flag": (
        "uint8",
        {
            "description": (
                "Flag indicating degraded state of pointing and/or positioning information"
            ),
            "long_name": "Degrade flag",
            "source": "L2A",
            "units": "-",
            "valid_range": (0, 1),
        },
    ),
    "delta_time": (
        "float64",
        {
            "description": "Time delta since Jan 1 00:00 2018.",
            "long_name": "Delta time",
            "source": "L2A",
            "units": "s",
        },
    ),
    "elev_lowestmode": (
        "float32",
        {
            "coordinates": _C3,
            "description": _ELEV_DESCRIPTION,
            "long_name": "Elevation of the lowest mode",
            "source": "L2A",
            "units": "m",
            "valid_range": (-1000.0, 25000.0),
        },
    ),
    "l2_quality_flag": (
        "uint8",
        {
            "coordinates": _C3,
            "description": "Flag identifying the most useful L2 data for biomass predictions",
            "long_name": "Level 2 quality flag",
            "units": "-",
            "valid_range": (0, 1),
        },
    ),
    "l4_quality_flag": (
        "uint8",
        {
            "coordinates": _C3,
            "description": "Flag simplifying selection of most useful biomass predictions",
            "long_name": "Level 4 quality flag",
            "units": "-",
            "valid_range": (0, 1),
        },
    ),
    "lat_lowestmode": (
        "float64",
        {
            "coordinates": "delta_time lon_lowestmode",
            "description": "Latitude of center of lowest mode",
            "long_name": "Latitude of the lowest mode",
            "source": "L2A",
            "units": "degrees",
            "valid_range": (-55.0, 55.0),
        },
    ),
    "lon_lowestmode": (
        "float64",
        {
            "coordinates": "delta_time lat_lowestmode",
            "description": "Longitude of center of lowest mode",
            "long_name": "Longitude of the lowest mode",
            "source": "L2A",
            "units": "degrees",
        },
    ),
    "master_frac": (
        "float64",
        {
            "description": (
                "Master time, fractional part. master_int+master_frac is equivalent to "
                "/BEAMXXXX/delta_time."
            ),
            "long_name": "Fraction component of shot time",
            "source": "L2A",
            "units": "s",
        },
    ),
    "master_int": (
        "uint32",
        {
            "description": (
                "Master time, integer part. Seconds since master_time_epoch. "
                "master_int+master_frac is equivalent to /BEAMXXXX/delta_time."
            ),
            "long_name": "Integer component of shot time",
            "source": "L2A",
            "units": "s",
        },
    ),
    "predict_stratum": (
        "str",
        {
            "coordinates": _C3,
            "description": "Character ID of the prediction stratum name for the 1 km cell",
            "long_name": "Prediction stratum identifier",
            "units": "-",
        },
    ),
    "predictor_limit_flag": (
        "uint8",
        {
            "coordinates": _C3,
            "description": (
                "Predictor value is outside the bounds of the training data (0=In bounds; 1=Lower "
                "bound; 2=Upper bound)"
            ),
            "long_name": "Predictor is outside the bounds of the training data",
            "units": "-",
            "valid_range": (0, 1),
        },
    ),
    "response_limit_flag": (
        "uint8",
        {
            "coordinates": _C3,
            "description": (
                "Prediction value is outside the bounds of the training data (0=In bounds; 1=Lower"
                " bound; 2=Upper bound)"
            ),
            "long_name": "Prediction is outside the bounds of the training data",
            "units": "-",
            "valid_range": (0, 1),
        },
    ),
    "selected_algorithm": (
        "uint8",
        {
            "coordinates": _C3,
            "description": "selected_algorithm",
            "long_name": "Selected algorithm setting group",
            "source": "L2A",
            "units": "-",
            "valid_range": (1, 10),
        },
    ),
    "selected_mode": (
        "uint8",
        {
            "coordinates": _C3,
            "description": "ID of mode selected as lowest non-noise mode",
            "long_name": "Selected mode",
            "source": "L2A",
            "units": "-",
            "valid_range": (0, 1),
        },
    ),
    "selected_mode_flag": (
        "uint8",
        {
            "coordinates": _C3,
            "description": "Flag indicating status of selected_mode",
            "long_name": "Selected mode flag",
            "source": "L2A",
            "units": "-",
            "valid_range": (0, 1),
        },
    ),
    "sensitivity": (
        "float32",
        {
            "coordinates": _C3,
            "description": _SENSITIVITY_DESCRIPTION,
            "long_name": "Beam sensitivity",
            "source": "L2A",
            "units": "-",
            "valid_range": (0.0, 1.0),
        },
    ),
    "shot_number": (
        "uint64",
        {
            "coordinates": _UP_C3,
            "description": "Shot number",
            "long_name": "Shot number",
            "source": "L2A",
            "units": "-",
        },
    ),
    "solar_elevation": (
        "float32",
        {
            "coordinates": _C3,
            "description": "Solar elevation angle",
            "long_name": "Solar elevation",
            "source": "L2A",
            "units": "degrees",
        },
    ),
    "surface_flag": (
        "uint8",
        {
            "coordinates": _C3,
            "description": (
                "Indicates elev_lowestmode is within 300m of Digital Elevation Model (DEM) or Mean"
                " Sea Surface (MSS) elevation"
            ),
            "long_name": "Surface flag",
            "source": "L2A",
            "units": "-",
            "valid_range": (0, 1),
        },
    ),
    "xvar": (
        "float32",
        {
            "coordinates": _C3,
            "description": "Predictor variables (offset and transformation have been applied)",
            "long_name": "Predictor variables",
            "units": "-",
        },
    ),
}
"""Top-level per-beam datasets: name -> (dtype, attributes); `str` is variable-length UTF-8."""

_PRED_C = "../delta_time ../geolocation/lat_lowestmode_{a} ../geolocation/lon_lowestmode_{a}"

# name -> (dtype, attributes, source field in the top-level fields); "{a}" is the algorithm.
_PREDICTION_FIELDS: dict[str, tuple[str, Attrs, str]] = {
    "agbd": (
        "float32",
        {
            "coordinates": _PRED_C,
            "description": "Aboveground biomass density",
            "long_name": "Aboveground biomass density",
            "units": "Mg / ha",
        },
        "agbd",
    ),
    "agbd_pi_lower": (
        "float32",
        {
            "coordinates": _PRED_C,
            "description": "Lower prediction interval (see alpha attribute for the level)",
            "long_name": "Aboveground biomass density lower prediction interval",
            "units": "Mg / ha",
        },
        "agbd_pi_lower",
    ),
    "agbd_pi_upper": (
        "float32",
        {
            "coordinates": _PRED_C,
            "description": "Upper prediction interval (see alpha attribute for the level)",
            "long_name": "Aboveground biomass density upper prediction interval",
            "units": "Mg / ha",
        },
        "agbd_pi_upper",
    ),
    "agbd_se": (
        "float32",
        {
            "coordinates": _PRED_C,
            "description": "Aboveground biomass density (Mg / ha) prediction standard error",
            "long_name": "Aboveground biomass density standard error",
            "units": "Mg / ha",
        },
        "agbd_se",
    ),
    "agbd_t": (
        "float32",
        {
            "coordinates": _PRED_C,
            "description": "Model prediction in transform space",
            "long_name": "Aboveground biomass density in transform space",
            "units": "Mg / ha",
        },
        "agbd_t",
    ),
    "agbd_t_pi_lower": (
        "float32",
        {
            "coordinates": _PRED_C,
            "description": (
                "Lower prediction interval in transform space (see alpha attribute for the level)"
            ),
            "long_name": "Lower prediction interval in transform space",
            "units": "Mg / ha",
        },
        "agbd_t_pi_lower",
    ),
    "agbd_t_pi_upper": (
        "float32",
        {
            "coordinates": _PRED_C,
            "description": (
                "Upper prediction interval in transform space (see alpha attribute for the level)"
            ),
            "long_name": "Upper prediction interval in transform space",
            "units": "Mg / ha",
        },
        "agbd_t_pi_upper",
    ),
    "agbd_t_se": (
        "float32",
        {
            "coordinates": _PRED_C,
            "description": _T_SE_DESCRIPTION,
            "long_name": "Model prediction standard error",
            "units": "-",
        },
        "agbd_t_se",
    ),
    "algorithm_run_flag": (
        "uint8",
        {
            "coordinates": _PRED_C,
            "description": _RUN_FLAG_DESCRIPTION,
            "long_name": "Algorithm run flag",
            "units": "-",
        },
        "algorithm_run_flag",
    ),
    "l2_quality_flag": (
        "uint8",
        {
            "coordinates": _PRED_C,
            "description": "Flag identifying the most useful L2 data for biomass predictions",
            "long_name": "Level 2 quality flag",
            "units": "-",
        },
        "l2_quality_flag",
    ),
    "l4_quality_flag": (
        "uint8",
        {
            "coordinates": _PRED_C,
            "description": "Flag simplifying selection of most useful biomass predictions",
            "long_name": "Level 4 quality flag",
            "units": "-",
        },
        "l4_quality_flag",
    ),
    "predictor_limit_flag": (
        "uint8",
        {
            "coordinates": _PRED_C,
            "description": "Predictor value is outside the bounds of the training data",
            "long_name": "Predictor is outside the bounds of the training data",
            "units": "-",
        },
        "predictor_limit_flag",
    ),
    "response_limit_flag": (
        "uint8",
        {
            "coordinates": _PRED_C,
            "description": "Prediction value is outside the bounds of the training data",
            "long_name": "Prediction is outside the bounds of the training data",
            "units": "-",
        },
        "response_limit_flag",
    ),
    "selected_mode": (
        "uint8",
        {
            "coordinates": _PRED_C,
            "description": "ID of mode selected as lowest non-noise mode",
            "long_name": "Selected mode",
            "source": "L2A",
            "units": "-",
        },
        "selected_mode",
    ),
    "selected_mode_flag": (
        "uint8",
        {
            "coordinates": _PRED_C,
            "description": "Flag indicating status of selected_mode",
            "long_name": "Selected mode flag",
            "source": "L2A",
            "units": "-",
        },
        "selected_mode_flag",
    ),
    "xvar": (
        "float32",
        {
            "coordinates": _PRED_C,
            "description": "Predictor variables (offset and transformation have been applied)",
            "long_name": "Predictor variables",
            "units": "-",
        },
        "xvar",
    ),
}

_PREDICTION_GROUP_ATTRS: Attrs = {
    "alpha": np.float64(0.1),
    "l2a_alg_count": np.int64(len(ALGORITHMS)),
    "max_nvar": np.int64(4),
    "pft_grid_version": np.int64(4),
    "pft_infilled_grid_version": np.int64(6),
    "phenology_grid_version": np.int64(5),
    "predictor_offset": np.int64(100),
    "region_grid_version": np.int64(5),
    "response_offset": np.int64(0),
    "urban_grid_version": np.int64(1),
    "water_grid_version": np.int64(1),
}

_GEOLOCATION_FIELDS: dict[str, tuple[str, Attrs, str]] = {
    "elev_lowestmode": (
        "float32",
        {
            "coordinates": "../delta_time lat_lowestmode_{a} lon_lowestmode_{a}",
            "description": _ELEV_DESCRIPTION,
            "long_name": "Elevation of the lowest mode",
            "source": "L2A",
            "units": "m",
            "valid_range": (-1000.0, 25000.0),
        },
        "elev_lowestmode",
    ),
    "lat_lowestmode": (
        "float64",
        {
            "coordinates": "../delta_time lon_lowestmode_{a}",
            "description": "Latitude of center of lowest mode",
            "long_name": "Latitude of the lowest mode",
            "source": "L2A",
            "units": "degrees",
            "valid_range": (-55.0, 55.0),
        },
        "lat_lowestmode",
    ),
    "lon_lowestmode": (
        "float64",
        {
            "coordinates": "../delta_time lat_lowestmode_{a}",
            "description": "Longitude of center of lowest mode",
            "long_name": "Longitude of the lowest mode",
            "source": "L2A",
            "units": "degrees",
        },
        "lon_lowestmode",
    ),
    "sensitivity": (
        "float32",
        {
            "coordinates": "../delta_time lat_lowestmode_{a} lon_lowestmode_{a}",
            "description": _SENSITIVITY_DESCRIPTION,
            "long_name": "Beam sensitivity",
            "source": "L2A",
            "units": "-",
        },
        "sensitivity",
    ),
}

_SHOT_NUMBER_FIELD: tuple[str, Attrs] = _BEAM_FIELDS["shot_number"]

_STALE_RETURN_FIELD: tuple[str, Attrs] = (
    "uint8",
    {
        "coordinates": _UP_C3,
        "description": (
            "Flag from digitizer indicating the real-time pulse detection algorithm did not detect"
            " a return signal above its detection threshold within the entire 10 km search window."
            " The pulse location of the previous shot was used to select the telemetered waveform."
        ),
        "long_name": "Stale return flag",
        "source": "L2A",
        "units": "-",
    },
)

_LC_C = "../delta_time ../geolocation/lat_lowestmode_a1 ../geolocation/lon_lowestmode_a1"
_LAND_COVER_FIELDS: dict[str, tuple[str, Attrs]] = {
    "landsat_treecover": (
        "float64",
        {
            "coordinates": _LC_C,
            "description": (
                "Tree cover in the year 2010, defined as canopy closure for all vegetation taller "
                "than 5m in height (Hansen et al.). Encoded as a percentage per output grid cell."
            ),
            "long_name": "Landsat tree canopy cover",
            "source": "L2A",
            "units": "percent",
        },
    ),
    "landsat_water_persistence": (
        "uint8",
        {
            "coordinates": _LC_C,
            "description": (
                "The percent UMD GLAD Landsat observations with classified surface water between "
                "2018 and 2019. Values > 80 usually represent permanent water while values < 10 "
                "represent permanent land."
            ),
            "long_name": "25 m Landsat water persistence",
            "units": "percent",
        },
    ),
    "leaf_off_doy": (
        "int16",
        {
            "coordinates": _LC_C,
            "description": (
                "GEDI 1 km EASE 2.0 grid leaf-off start day-of-year derived from the NPP VIIRS "
                "Global Land Surface Phenology Product."
            ),
            "long_name": "1 km VIIRS leaf-off day-of-year",
            "units": "days",
        },
    ),
    "leaf_off_flag": (
        "uint8",
        {
            "coordinates": _LC_C,
            "description": (
                "GEDI 1 km EASE 2.0 grid flag derived from leaf_off_doy, leaf_on_doy and "
                "pft_class, indicating if the observation was recorded during leaf-off conditions "
                "in deciduous needleleaf or broadleaf forests and woodlands. 1 = leaf-off and 0 = "
                "leaf-on."
            ),
            "long_name": "1 km VIIRS leaf-off flag",
            "units": "-",
        },
    ),
    "leaf_on_cycle": (
        "uint8",
        {
            "coordinates": _LC_C,
            "description": (
                "Flag that indicates the vegetation growing cycle for leaf-on observations. Values"
                " are 0 (leaf-off conditions), 1 (cycle 1) or 2 (cycle 2)."
            ),
            "long_name": "1 km VIIRS leaf-on cycle number",
            "units": "-",
        },
    ),
    "leaf_on_doy": (
        "int16",
        {
            "coordinates": _LC_C,
            "description": (
                "GEDI 1 km EASE 2.0 grid leaf-on start day-of-year derived from the NPP VIIRS "
                "Global Land Surface Phenology Product."
            ),
            "long_name": "1 km VIIRS leaf-on day-of-year",
            "units": "-",
        },
    ),
    "pft_class": (
        "uint8",
        {
            "coordinates": _LC_C,
            "description": (
                "GEDI 1 km EASE 2.0 grid Plant Functional Type (PFT) derived from the MODIS "
                "MCD12Q1v006 Product. Values follow the Land Cover Type 5 Classification scheme."
            ),
            "long_name": "1 km MODIS Plant Functional Type class",
            "units": "-",
        },
    ),
    "region_class": (
        "uint8",
        {
            "coordinates": _LC_C,
            "description": (
                "GEDI 1 km EASE 2.0 grid world continental regions (0: Water, 1: Europe, 2: North "
                "Asia, 3: Australasia, 4: Africa, 5: South Asia, 6: South America, 7: North "
                "America)."
            ),
            "long_name": "1 km geographic region class",
            "units": "-",
        },
    ),
    "urban_focal_window_size": (
        "uint8",
        {
            "coordinates": _LC_C,
            "description": (
                "The focal window size used to calculate urban_proportion. Values are 3 (3x3 pixel"
                " window size) or 5 (5x5 pixel window size)."
            ),
            "long_name": "Urban focal window size",
            "units": "pixels",
        },
    ),
    "urban_proportion": (
        "uint8",
        {
            "coordinates": _LC_C,
            "description": (
                "The percentage proportion of land area within a focal area surrounding each shot "
                "that is urban land cover. Urban land cover is derived from the DLR 12 m "
                "resolution TanDEM-X Global Urban Footprint Product."
            ),
            "long_name": "25 m TDX urban percentage",
            "units": "percent",
        },
    ),
}

_DATASET_IDENTIFICATION: Attrs = {
    "PGEVersion": "002",
    "abstract": (
        "The GEDI L4A standard data product contains predictions of aboveground biomass density "
        "within each laser footprint."
    ),
    "characterSet": "utf8",
    "credit": (
        "The software that generates the L4A product was implemented at the Department of "
        "Geographical Sciences at the University of Maryland (UMD), in collaboration with the GEDI"
        " Science Data Processing System at the NASA Goddard Space Flight Center (GSFC) in "
        "Greenbelt, Maryland and the Institute at Brown for Environment and Society at Brown "
        "University."
    ),
    "gedi_l4a_githash": "ff65eff8c048dbe7f391d8b9a87b010026c60c62",
    "language": "eng",
    "originatorOrganizationName": (
        "GSFC GEDI-SDPS > GEDI Science Data Processing System and University of Maryland"
    ),
    "purpose": (
        "The purpose of the L4A dataset is to provide an estimate of aboveground biomass density "
        "from each GEDI waveform."
    ),
    "shortName": "GEDI_L4A",
    "spatialRepresentationType": "along-track",
    "status": "onGoing",
    "topicCategory": "geoscientificInformation",
}

_BEAM_CHANNEL = {
    "BEAM0000": 0,
    "BEAM0001": 0,
    "BEAM0010": 1,
    "BEAM0011": 1,
    "BEAM0101": 2,
    "BEAM0110": 3,
    "BEAM1000": 4,
    "BEAM1011": 5,
}

# Fitted models of ANCILLARY/model_data: model_name -> (model_id, fit_stratum, rh_index,
# predictor_max_value, par, lower triangle of vcov, rse, dof, response_max_value,
# bias_correction_value). Models are `sqrt(agbd) ~ par · [1, sqrt(rh + 100), …]`.
# fmt: off
_MODELS: dict[str, tuple] = {
    "DBT_Af": (3, "DBT_Af", [50, 98], [10.97907, 11.38815],
               [-118.408066, 1.95679402, 9.96180534],
               [22.0588, -1.82691, 0.522539, -0.322377, -0.328566, 0.344764],
               1.950498, 487, 386.75888, 1.0924628),
    "EBT_Au": (1, "EBT_Au", [70, 98], [11.67904, 12.02081],
               [-155.4142, 7.81670189, 7.70954657],
               [23.4775, 1.41688, 0.776412, -3.46057, -0.872369, 1.14752],
               2.923645, 210, 830.58203, 1.0179201),
    "DBT_Eu": (1, "Eu", [70, 98], [11.5646, 11.90336],
               [-96.5307007, 7.17539549, 2.92146826],
               [7.37126, -0.678515, 0.516144, -0.006649, -0.441615, 0.431132],
               2.81827, 747, 724.05798, 0.96263224),
    "DBT_coarse": (1, "DBT", [60, 98], [11.52562, 11.89706],
                   [-110.059128, 5.13380289, 6.17163038],
                   [6.36353, -0.382217, 0.0897018, -0.218439, -0.0505557, 0.0682958],
                   2.661183, 1695, 724.05798, 1.016632),
    "EBT_SA": (1, "EBT_SA", [50, 98], [12.22784, 12.7738],
               [-134.770157, 6.65359163, 6.68711805],
               [3.32094, -0.102546, 0.0728005, -0.194443, -0.0601376, 0.0742393],
               3.439619, 3438, 1578.0, 1.1055282),
    "EBT_coarse": (1, "EBT", [50, 98], [12.66807, 13.05297],
                   [-104.965454, 6.80217409, 3.95531225],
                   [1.62102, -0.100037, 0.0562552, -0.047196, -0.0446903, 0.0466459],
                   3.920913, 4811, 1578.0, 1.1133657),
    "DBT_NAm": (1, "NAm", [50, 98], [12.01, 12.75304],
                [-120.777092, 5.50771856, 6.80801821],
                [4.19624, -0.30473, 0.0564589, -0.0976244, -0.0253285, 0.0329146],
                3.126976, 2279, 1768.6993, 1.0524216),
    "EBT_Af": (1, "EBT", [50, 98], [12.66807, 13.05297],
               [-104.965454, 6.80217409, 3.95531225],
               [1.62102, -0.100037, 0.0562552, -0.047196, -0.0446903, 0.0466459],
               3.920913, 4811, 1578.0, 1.1133657),
    "ENT_coarse": (4, "ENT", [60, 98], [12.1033, 12.75304],
                   [-118.411339, 7.77670717, 4.37790442],
                   [3.74163, -0.28079, 0.11296, -0.0725276, -0.0829782, 0.0865326],
                   3.292492, 1983, 1768.6993, 1.0183679),
    "ENT_Au": (1, "ENT_Au", [40, 98], [11.54123, 12.08718],
               [-101.9842, 6.3967247, 4.25883532],
               [77.2604, -8.94048, 2.77151, 1.45158, -1.8226, 1.6043],
               3.075415, 139, 571.71643, 0.89759189),
    "ENT_Eu": (1, "Eu", [70, 98], [11.5646, 11.90336],
               [-96.5307007, 7.17539549, 2.92146826],
               [7.37126, -0.678515, 0.516144, -0.006649, -0.441615, 0.431132],
               2.81827, 747, 724.05798, 0.96263224),
    "ENT_NAm": (2, "ENT", [70, 98], [12.32234, 12.75304],
                [-114.354568, 8.40065765, 3.34595799],
                [3.49076, -0.24219, 0.133202, -0.0849652, -0.106943, 0.111495],
                3.310075, 1983, 1768.6993, 1.0125337),
    "GSW_coarse": (1, "GSW", [98], [11.03585],
                   [-124.832283, 12.4263096],
                   [30.613, -2.93952, 0.28246],
                   1.626275, 87, 192.56259, 1.1181948),
    "GSW_Au": (3, "GSW", [50, 80, 98], [10.48713, 10.80231, 11.03585],
               [-151.383499, 4.4907136, -2.34683728, 12.9414234],
               [341.038, -45.7309, 7.91155, 12.4101, -4.4332, 6.25737, -0.767153, 1.09984,
                -3.04645, 1.9987],
               1.6374, 85, 192.56259, 1.1279695),
}
# fmt: on

_PFTS: dict[str, tuple[int, float]] = {
    # plant functional type -> (pft_class, median agbd in Mg/ha)
    "ENT": (1, 140.0),
    "EBT": (2, 180.0),
    "DNT": (3, 80.0),
    "DBT": (4, 110.0),
    "GSW": (5, 15.0),
}
_REGIONS: dict[str, int] = {"Eu": 1, "NAs": 2, "Au": 3, "Af": 4, "SAs": 5, "SA": 6, "NAm": 7}

# predict_stratum -> model_name, as in ANCILLARY/model_data of V002.
_STRATA: dict[str, str] = {
    "DBT_Af": "DBT_Af", "DBT_Au": "EBT_Au", "DBT_Eu": "DBT_Eu", "DBT_NAs": "DBT_coarse",
    "DBT_SA": "EBT_SA", "DBT_SAs": "EBT_coarse", "DBT_NAm": "DBT_NAm",
    "EBT_Af": "EBT_Af", "EBT_Au": "EBT_Au", "EBT_Eu": "DBT_Eu", "EBT_NAs": "DBT_coarse",
    "EBT_SA": "EBT_SA", "EBT_SAs": "EBT_coarse", "EBT_NAm": "DBT_NAm",
    "ENT_Af": "ENT_coarse", "ENT_Au": "ENT_Au", "ENT_Eu": "ENT_Eu", "ENT_NAs": "ENT_coarse",
    "ENT_SA": "ENT_coarse", "ENT_SAs": "ENT_coarse", "ENT_NAm": "ENT_NAm",
    "DNT_Af": "ENT_coarse", "DNT_Au": "ENT_Au", "DNT_Eu": "ENT_Eu", "DNT_NAs": "ENT_coarse",
    "DNT_SA": "ENT_coarse", "DNT_SAs": "ENT_coarse", "DNT_NAm": "ENT_NAm",
    "GSW_Af": "GSW_coarse", "GSW_Au": "GSW_Au", "GSW_Eu": "GSW_coarse", "GSW_NAs": "GSW_coarse",
    "GSW_SA": "GSW_coarse", "GSW_SAs": "GSW_coarse", "GSW_NAm": "GSW_coarse",
}  # fmt: skip

_PI_QUANTILE = 1.6448536  # two-sided 90 % interval (alpha = 0.1)
_ALONG_TRACK_STEP = (0.00042, 0.0003)  # degrees of latitude, longitude between shots
_BEAM_SPACING = 0.0055  # degrees between neighbouring beam tracks
_ORBIT_PERIOD = 86400.0 / 15.55  # seconds
_REFERENCE_ORBIT = (datetime(2020, 2, 5, 15, 13, 58, tzinfo=UTC), 6515)

_STRING_DTYPE = h5py.string_dtype("utf-8")


# --------------------------------------------------------------------------------------
# Field generation
# --------------------------------------------------------------------------------------


def _as_utc(moment: datetime) -> datetime:
    """Naive datetimes are UTC (as `parse_granule_name` returns them)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _beam_id(beam: str) -> int:
    if beam not in BEAM_NAMES:
        raise ValueError(f"{beam!r} is not a GEDI beam name (expected one of {BEAM_NAMES})")
    return int(beam[4:], 2)


def _track(
    n: int, rng: np.random.Generator, *, orbit: int, beam: str, start: datetime, bbox: BBox
) -> tuple[np.ndarray, np.ndarray]:
    """lat/lon of `n` shots on the ground track of `beam`, inside `bbox`.

    The track geometry depends on the orbit and time only, so the eight beams of one
    granule are parallel tracks ~600 m apart; `rng` adds metre-level jitter.
    """
    west, south, east, north = bbox
    width, height = east - west, north - south
    if not (width > 0 and height > 0):
        raise ValueError(f"bbox {bbox} must be (west, south, east, north) with west < east")
    geometry = np.random.default_rng([orbit, abs(int(start.timestamp()))])
    margin = min(4 * _BEAM_SPACING, 0.1 * width, 0.1 * height)
    inner_w, inner_h = width - 2 * margin, height - 2 * margin
    dlat, dlon = _ALONG_TRACK_STEP
    span = max(n - 1, 1)
    scale = min(1.0, 0.98 * inner_h / (span * dlat), 0.98 * inner_w / (span * dlon))
    dlat, dlon = dlat * scale, dlon * scale
    ascending = bool(geometry.integers(2))
    lat0 = south + margin + geometry.uniform(0, inner_h - span * dlat)
    lon0 = west + margin + geometry.uniform(0, inner_w - span * dlon)
    if not ascending:
        lat0, dlat = lat0 + span * dlat, -dlat
    # Cross-track offset of this beam, perpendicular to the track direction.
    offset = (BEAM_NAMES.index(beam) - 3.5) / 3.5 * min(3.5 * _BEAM_SPACING, margin)
    norm = float(np.hypot(dlat, dlon)) or 1.0
    index = np.arange(n, dtype=np.float64)
    lat = lat0 + dlat * index + offset * (-dlon / norm) + rng.normal(0.0, 2e-6, n)
    lon = lon0 + dlon * index + offset * (dlat / norm) + rng.normal(0.0, 2e-6, n)
    np.clip(lat, south, north, out=lat)
    np.clip(lon, west, east, out=lon)
    return lat, lon


def _region_of(bbox: BBox) -> str:
    """A rough GEDI region (`region_lut` name) for the centre of `bbox`."""
    west, south, east, north = bbox
    lon, lat = (west + east) / 2, (south + north) / 2
    if lon < -30:
        return "NAm" if lat > 15 else "SA"
    if lon < 40:
        return "Eu" if lat > 35 else "Af"
    if lat > 30:
        return "NAs"
    return "Au" if lat < -10 and lon > 110 else "SAs"


def _shot_numbers(orbit: int, beam_id: int, n: int, first_index: int = 1) -> np.ndarray:
    if not 0 < orbit < 100_000:
        raise ValueError(f"orbit {orbit} must be in 1..99999")
    if first_index + n > 10**8:
        raise ValueError("at most 10**8 - 1 shots per beam fit the shot number encoding")
    base = orbit * 10**13 + beam_id * 10**11 + SUB_ORBIT_GRANULE * 10**8 + first_index
    return np.uint64(base) + np.arange(n, dtype=np.uint64)


def shot_fields(
    n: int,
    rng: np.random.Generator,
    *,
    orbit: int,
    beam: str,
    acquisition_time: datetime,
    bbox: BBox = (-10.0, -10.0, 10.0, 10.0),
    pass_fraction: float = 0.6,
    fill_fraction: float = 0.05,
) -> dict[str, np.ndarray]:
    """Random but realistic arrays for every top-level dataset of one beam group.

    Returns the 29 per-beam datasets of the real product (all of `gedi.REQUIRED_FIELDS`
    and `gedi.REFERENCE_FIELDS` among them), each with the real dtype and `n` rows
    (`xvar` is `(n, 4)`, `predict_stratum` holds `bytes`).

    - `shot_number` follows the real encoding for `orbit` and `beam` (index from 1) and
      `beam` holds `int(beam[4:], 2)`;
    - `delta_time` starts 0–30 s after `acquisition_time` (naive means UTC) and grows by
      `SHOT_INTERVAL` per shot;
    - `lat_lowestmode`/`lon_lowestmode` lie on a straight track inside `bbox`
      (west, south, east, north), for every shot;
    - exactly `round(fill_fraction * n)` shots are fill (`agbd` = `agbd_se` = -9999,
      flags 0) and `min(round(pass_fraction * n), n - fills)` shots pass
      (`l2_quality_flag` = `l4_quality_flag` = 1, `surface_flag` = 1,
      `degrade_flag` = 0, `agbd` > 0, `agbd_se` > 0); the others fail the L4 flag, half
      of them also the L2 flag, and a few of those have `surface_flag` 0 or a non-zero
      `degrade_flag`;
    - `sensitivity` is in [0.9, 1].
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not (0.0 <= pass_fraction <= 1.0 and 0.0 <= fill_fraction <= 1.0):
        raise ValueError("pass_fraction and fill_fraction must be within [0, 1]")
    beam_id = _beam_id(beam)
    start = _as_utc(acquisition_time)

    # Which shots are fill, which pass the quality flags (exact counts, random positions).
    order = rng.permutation(n)
    n_fill = round(fill_fraction * n)
    n_pass = min(round(pass_fraction * n), n - n_fill)
    fill = np.zeros(n, dtype=bool)
    fill[order[:n_fill]] = True
    passing = np.zeros(n, dtype=bool)
    passing[order[n_fill : n_fill + n_pass]] = True
    failing = ~(fill | passing)
    draw = rng.random(n)
    l2 = passing | (failing & (draw < 0.5))
    l2_failing = failing & ~l2
    surface = ~(l2_failing & (draw > 0.9))
    degraded = l2_failing & (draw > 0.8) & (draw <= 0.9)

    # Stratum and model: the region follows the bbox, the PFT varies per beam.
    region = _region_of(bbox)
    pft = list(_PFTS)[rng.integers(len(_PFTS))]
    stratum = f"{pft}_{region}"
    model = _MODELS[_STRATA[stratum]]
    rse, bias, n_predictors = model[6], model[9], len(model[2])
    median = _PFTS[pft][1]

    # Biomass and its uncertainty following the square-root model of the product.
    agbd = rng.lognormal(np.log(median), 0.9, n)
    agbd_t = np.sqrt(agbd / bias)
    agbd_t_se = rse * (1.0 + 0.0004 * agbd_t + 0.0005 * np.abs(rng.standard_normal(n)))
    agbd_se = bias * agbd_t_se**2
    lower_t = agbd_t - _PI_QUANTILE * agbd_t_se
    upper_t = agbd_t + _PI_QUANTILE * agbd_t_se
    pi_lower = np.where(lower_t > 0, bias * np.maximum(lower_t, 0.0) ** 2, FILL_VALUE)
    pi_upper = bias * upper_t**2
    xvar = np.zeros((n, 4), dtype=np.float32)
    rh = np.clip(1.6 * agbd_t + rng.normal(0.0, 1.0, n), 0.0, None)
    xvar[:, 0] = np.sqrt(100.0 + rh)
    if n_predictors > 1:
        xvar[:, 1] = np.sqrt(100.0 + 1.25 * rh)
    for values in (agbd, agbd_se, agbd_t, agbd_t_se, pi_lower, pi_upper):
        values[fill] = FILL_VALUE
    xvar[fill] = FILL_VALUE

    t0 = (start - DELTA_TIME_EPOCH).total_seconds() + rng.uniform(0.0, 30.0)
    delta_time = t0 + SHOT_INTERVAL * np.arange(n, dtype=np.float64)
    master_int = np.floor(delta_time)
    lat, lon = _track(n, rng, orbit=orbit, beam=beam, start=start, bbox=bbox)
    elev = rng.uniform(0.0, 1500.0) + np.cumsum(rng.normal(0.0, 1.5, n))
    solar = rng.uniform(-70.0, 70.0) - 0.0004 * np.arange(n)
    sensitivity = np.where(passing, rng.uniform(0.95, 1.0, n), rng.uniform(0.9, 1.0, n))
    limit_flag = np.where(fill, 255, 0).astype(np.uint8)

    return {
        "agbd": agbd.astype(np.float32),
        "agbd_pi_lower": pi_lower.astype(np.float32),
        "agbd_pi_upper": pi_upper.astype(np.float32),
        "agbd_se": agbd_se.astype(np.float32),
        "agbd_t": agbd_t.astype(np.float32),
        "agbd_t_se": agbd_t_se.astype(np.float32),
        "algorithm_run_flag": (~fill).astype(np.uint8),
        "beam": np.full(n, beam_id, dtype=np.uint16),
        "channel": np.full(n, _BEAM_CHANNEL[beam], dtype=np.uint8),
        "degrade_flag": np.where(degraded, 4, 0).astype(np.uint8),
        "delta_time": delta_time,
        "elev_lowestmode": np.clip(elev, -100.0, 8000.0).astype(np.float32),
        "l2_quality_flag": l2.astype(np.uint8),
        "l4_quality_flag": passing.astype(np.uint8),
        "lat_lowestmode": lat,
        "lon_lowestmode": lon,
        "master_frac": delta_time - master_int,
        "master_int": master_int.astype(np.uint32),
        "predict_stratum": np.full(n, stratum.encode(), dtype=object),
        "predictor_limit_flag": limit_flag,
        "response_limit_flag": limit_flag.copy(),
        "selected_algorithm": rng.choice(
            np.array([1, 2, 5, 10], dtype=np.uint8), n, p=[0.3, 0.2, 0.1, 0.4]
        ),
        "selected_mode": rng.integers(0, 16, n, dtype=np.uint8),
        "selected_mode_flag": np.where(draw < 0.7, 3, 0).astype(np.uint8),
        "sensitivity": sensitivity.astype(np.float32),
        "shot_number": _shot_numbers(orbit, beam_id, n),
        "solar_elevation": solar.astype(np.float32),
        "surface_flag": surface.astype(np.uint8),
        "xvar": xvar,
    }


def _land_cover(
    fields: Mapping[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """`land_cover_data` arrays consistent with the beam's `predict_stratum`."""
    n = len(fields["shot_number"])
    stratum = fields["predict_stratum"][0] if n else b"GSW_Af"
    pft, _, region = (stratum.decode() if isinstance(stratum, bytes) else str(stratum)).partition(
        "_"
    )
    pft_class, _ = _PFTS.get(pft, (5, 0.0))
    tree = pft_class != 5
    cover = np.clip(rng.normal(85.0 if tree else 10.0, 12.0, n), 0.0, 100.0).round()
    water = np.where(rng.random(n) < 0.02, rng.integers(0, 101, n), 0)
    deciduous = pft in ("DBT", "DNT")
    off_doy = np.full(n, 300 if deciduous else 32767, dtype=np.int16)
    on_doy = np.full(n, 120 if deciduous else 32767, dtype=np.int16)
    flag = 0 if deciduous else 255
    return {
        "landsat_treecover": cover,
        "landsat_water_persistence": water.astype(np.uint8),
        "leaf_off_doy": off_doy,
        "leaf_off_flag": np.full(n, flag, dtype=np.uint8),
        "leaf_on_cycle": np.full(n, 1 if deciduous else 255, dtype=np.uint8),
        "leaf_on_doy": on_doy,
        "pft_class": np.full(n, pft_class, dtype=np.uint8),
        "region_class": np.full(n, _REGIONS.get(region, 0), dtype=np.uint8),
        "urban_focal_window_size": np.full(n, 3, dtype=np.uint8),
        "urban_proportion": np.where(rng.random(n) < 0.01, rng.integers(1, 60, n), 0).astype(
            np.uint8
        ),
    }


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


class _Writer:
    """Creates datasets with the real storage layout; compresses each distinct array once.

    Uses h5py's low-level API: a granule has ~1,500 datasets and ~7,000 attributes, and
    the high-level calls would take longer than writing the data.
    """

    def __init__(self) -> None:
        self._cache: dict[int, tuple[np.ndarray, list[tuple[tuple[int, ...], bytes]]]] = {}
        self._dcpl: dict[int, h5py.h5p.PropDCID] = {}

    def clear(self) -> None:
        self._cache.clear()

    def _chunks(self, data: np.ndarray) -> list[tuple[tuple[int, ...], bytes]]:
        cached = self._cache.get(id(data))
        if cached is not None and cached[0] is data:
            return cached[1]
        chunks: list[tuple[tuple[int, ...], bytes]] = []
        n = data.shape[0]
        columns = [data] if data.ndim == 1 else [data[:, j] for j in range(data.shape[1])]
        for j, column in enumerate(columns):
            for start in range(0, n, CHUNK_SIZE):
                piece = column[start : start + CHUNK_SIZE]
                if len(piece) < CHUNK_SIZE:  # HDF5 stores whole chunks; pad with the fill value
                    padded = np.zeros(CHUNK_SIZE, dtype=data.dtype)
                    padded[: len(piece)] = piece
                    piece = padded
                else:
                    piece = np.ascontiguousarray(piece)
                offset = (start,) if data.ndim == 1 else (start, j)
                chunks.append((offset, zlib.compress(piece, GZIP_LEVEL)))
        self._cache[id(data)] = (data, chunks)
        return chunks

    def _creation_properties(self, ndim: int) -> h5py.h5p.PropDCID:
        dcpl = self._dcpl.get(ndim)
        if dcpl is None:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_chunk((CHUNK_SIZE,) + (1,) * (ndim - 1))
            dcpl.set_deflate(GZIP_LEVEL)
            dcpl.set_obj_track_times(False)
            self._dcpl[ndim] = dcpl
        return dcpl

    def dataset(self, group: h5py.Group, name: str, data: np.ndarray, attrs: Attrs) -> None:
        """Write `data` as `group[name]`: chunks (14200, 1…), gzip 4, unlimited maxshape."""
        strings = data.dtype.kind in "OSU"
        dtype = _STRING_DTYPE if strings else data.dtype
        space = h5py.h5s.create_simple(data.shape, (h5py.h5s.UNLIMITED,) * data.ndim)
        dataset = h5py.h5d.create(
            group.id,
            name.encode(),
            h5py.h5t.py_create(dtype, logical=True),
            space,
            dcpl=self._creation_properties(data.ndim),
        )
        if strings:
            if len(data):
                h5py.Dataset(dataset)[...] = data
        else:
            for offset, blob in self._chunks(data):
                dataset.write_direct_chunk(offset, blob)
        _set_attrs(dataset, attrs, data.dtype)


_SCALAR_SPACE = h5py.h5s.create(h5py.h5s.SCALAR)
_STRING_TYPE = h5py.h5t.py_create(_STRING_DTYPE, logical=True)
_STRING_MEMORY_TYPE = h5py.h5t.py_create(_STRING_DTYPE)


def _set_attrs(obj: h5py.HLObject | h5py.h5o.ObjectID, attrs: Attrs, dtype: Any = None) -> None:
    """Write `attrs` as the real product does: strings as scalar UTF-8 variable-length."""
    object_id = obj.id if isinstance(obj, h5py.HLObject) else obj
    for key, value in attrs.items():
        if isinstance(value, str):
            array = np.array(value, dtype=_STRING_DTYPE)
            file_type, memory_type = _STRING_TYPE, _STRING_MEMORY_TYPE
        else:
            array = np.asarray(value, dtype=dtype if key == "valid_range" else None)
            file_type = memory_type = h5py.h5t.py_create(array.dtype)
        space = _SCALAR_SPACE if array.ndim == 0 else h5py.h5s.create_simple(array.shape)
        attribute = h5py.h5a.create(object_id, key.encode(), file_type, space)
        attribute.write(array, mtype=memory_type)


def _cast(name: str, value: Any) -> np.ndarray:
    """An array for field `name` with the real dtype (unknown fields keep their dtype)."""
    spec = _BEAM_FIELDS.get(name)
    if spec is None:
        return np.asarray(value)
    dtype = spec[0]
    if dtype == "str":
        array = np.asarray(value, dtype=object)
        return np.array(
            [item.encode() if isinstance(item, str) else bytes(item) for item in array],
            dtype=object,
        )
    return np.asarray(value).astype(dtype, copy=False)


def _beam_arrays(
    beam: str,
    given: Mapping[str, np.ndarray | None] | None,
    rng: np.random.Generator,
    *,
    shots: int,
    orbit: int,
    acquisition_time: datetime,
    bbox: BBox,
    pass_fraction: float,
    fill_fraction: float,
) -> tuple[dict[str, np.ndarray], set[str]]:
    """All top-level fields of a beam: the given ones verbatim, the others generated."""
    given = dict(given or {})
    lengths = {name: len(np.asarray(value)) for name, value in given.items() if value is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{beam}: the given fields differ in length: {lengths}")
    n = next(iter(lengths.values())) if lengths else shots
    fields = shot_fields(
        n,
        rng,
        orbit=orbit,
        beam=beam,
        acquisition_time=acquisition_time,
        bbox=bbox,
        pass_fraction=pass_fraction,
        fill_fraction=fill_fraction,
    )
    omitted = {name for name, value in given.items() if value is None}
    for name, value in given.items():
        if value is not None:
            fields[name] = _cast(name, value)
    return fields, omitted


def _write_beam(
    writer: _Writer,
    handle: h5py.File,
    beam: str,
    fields: dict[str, np.ndarray],
    omitted: set[str],
    rng: np.random.Generator,
    full_layout: bool,
) -> None:
    """One beam group; in the full layout also its three sub-groups.

    As in the real product, `shot_number` is one dataset hard-linked into the beam group
    and its three sub-groups, and `geolocation/sensitivity_a5` is a hard link to
    `geolocation/sensitivity_a10`.
    """
    group = handle.create_group(beam)
    group.attrs["description"] = "Coverage beam" if beam in COVERAGE_BEAMS else "Full power beam"
    for name, data in fields.items():
        if name in omitted:
            continue
        attrs = _BEAM_FIELDS[name][1] if name in _BEAM_FIELDS else {}
        writer.dataset(group, name, data, attrs)
    if not full_layout:
        return

    # Transform-space prediction intervals (only stored per algorithm).
    agbd_t, agbd_t_se = fields["agbd_t"], fields["agbd_t_se"]
    invalid = (agbd_t == FILL_VALUE) | (agbd_t_se == FILL_VALUE)
    lower = np.where(invalid, FILL_VALUE, agbd_t - _PI_QUANTILE * agbd_t_se)
    upper = np.where(invalid, FILL_VALUE, agbd_t + _PI_QUANTILE * agbd_t_se)
    derived = {
        **fields,
        "agbd_t_pi_lower": lower.astype(np.float32),
        "agbd_t_pi_upper": upper.astype(np.float32),
    }

    def source(name: str, dtype: str) -> np.ndarray:
        # Cast once so that every dataset repeating it shares the compressed chunks.
        if derived[name].dtype != dtype:
            derived[name] = derived[name].astype(dtype)
        return derived[name]

    prediction = group.create_group("agbd_prediction")
    _set_attrs(prediction, _PREDICTION_GROUP_ATTRS)
    for algorithm in ALGORITHMS:
        for base, (dtype, attrs, name) in _PREDICTION_FIELDS.items():
            attrs = _format_attrs(attrs, algorithm)
            writer.dataset(prediction, f"{base}_{algorithm}", source(name, dtype), attrs)

    geolocation = group.create_group("geolocation")
    for algorithm in ALGORITHMS:
        for base, (dtype, attrs, name) in _GEOLOCATION_FIELDS.items():
            if (base, algorithm) == ("sensitivity", "a5"):
                continue
            attrs = _format_attrs(attrs, algorithm)
            writer.dataset(geolocation, f"{base}_{algorithm}", source(name, dtype), attrs)
    geolocation["sensitivity_a5"] = geolocation["sensitivity_a10"]
    stale = (rng.random(len(derived["shot_number"])) < 0.002).astype(np.uint8)
    writer.dataset(geolocation, "stale_return_flag", stale, _STALE_RETURN_FIELD[1])

    land_cover = group.create_group("land_cover_data")
    land_fields = _land_cover(derived, rng)
    for name, (dtype, attrs) in _LAND_COVER_FIELDS.items():
        writer.dataset(land_cover, name, land_fields[name].astype(dtype, copy=False), attrs)

    if "shot_number" in omitted:
        shot_number = source("shot_number", "uint64")
        writer.dataset(prediction, "shot_number", shot_number, _SHOT_NUMBER_FIELD[1])
        linked = prediction["shot_number"]
        targets = (geolocation, land_cover)
    else:
        linked = group["shot_number"]
        targets = (prediction, geolocation, land_cover)
    for target in targets:
        target["shot_number"] = linked


def _format_attrs(attrs: Attrs, algorithm: str) -> Attrs:
    return {
        key: value.format(a=algorithm) if isinstance(value, str) else value
        for key, value in attrs.items()
    }


def _write_ancillary(handle: h5py.File) -> None:
    group = handle.create_group("ANCILLARY")
    string = _STRING_DTYPE
    model_dtype = np.dtype(
        [
            ("predict_stratum", string),
            ("model_group", "u1"),
            ("model_name", string),
            ("model_id", "u1"),
            ("x_transform", string),
            ("y_transform", string),
            ("bias_correction_name", string),
            ("fit_stratum", string),
            ("rh_index", "u1", (8,)),
            ("predictor_id", "u1", (8,)),
            ("predictor_max_value", "<f4", (8,)),
            ("vcov", "<f8", (5, 5)),
            ("par", "<f8", (5,)),
            ("rse", "<f4"),
            ("dof", "<u4"),
            ("response_max_value", "<f4"),
            ("bias_correction_value", "<f4"),
            ("npar", "u1"),
        ]
    )
    rows = np.zeros(len(_STRATA), dtype=model_dtype)
    for row, (stratum, model_name) in zip(rows, _STRATA.items(), strict=True):
        model_id, fit, rh_index, max_values, par, tri, rse, dof, response_max, bias = _MODELS[
            model_name
        ]
        npar = len(par)
        vcov = np.zeros((5, 5))
        vcov[np.tril_indices(npar)] = tri
        vcov = np.tril(vcov) + np.tril(vcov, -1).T
        row["predict_stratum"] = stratum
        row["model_group"] = 3 if model_name == "ENT_Au" else 4
        row["model_name"] = model_name
        row["model_id"] = model_id
        row["x_transform"] = row["y_transform"] = "sqrt"
        row["bias_correction_name"] = "Snowdon"
        row["fit_stratum"] = fit
        row["rh_index"][: len(rh_index)] = rh_index
        row["predictor_id"][: len(rh_index)] = np.arange(1, len(rh_index) + 1)
        row["predictor_max_value"][: len(max_values)] = max_values
        row["vcov"] = vcov
        row["par"][:npar] = par
        row["rse"], row["dof"], row["npar"] = rse, dof, npar
        row["response_max_value"], row["bias_correction_value"] = response_max, bias
    group.create_dataset("model_data", data=rows)
    pft = np.array(
        [(1, "ENT"), (3, "DNT"), (2, "EBT"), (4, "DBT"), (5, "GSW"), (6, "GSW"), (11, "GSW")],
        dtype=[("pft_class", "u1"), ("pft_name", string)],
    )
    group.create_dataset("pft_lut", data=pft)
    regions = np.array(
        [(1, "Eu"), (2, "NAs"), (5, "SAs"), (3, "Au"), (4, "Af"), (6, "SA"), (7, "NAm")],
        dtype=[("region_class", "u1"), ("region_name", string)],
    )
    group.create_dataset("region_lut", data=regions)


def _write_metadata(
    handle: h5py.File, name: str, acquisition_time: datetime, version: int, seed: int, short: str
) -> None:
    identification = handle.create_group("METADATA").create_group("DatasetIdentification")
    created = _as_utc(acquisition_time) + timedelta(days=2, hours=3)
    attrs = {
        **_DATASET_IDENTIFICATION,
        "VersionID": f"{version:02d}",
        "creationDate": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "fileName": name,
        "shortName": short,
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"gedidata-synthetic/{name}/{seed}")),
    }
    if short != "GEDI_L4A":
        for key in ("abstract", "credit", "gedi_l4a_githash", "purpose"):
            attrs.pop(key)
    for key in sorted(attrs):
        identification.attrs[key] = attrs[key]


def write_granule(
    directory: str | Path,
    acquisition_time: datetime,
    *,
    orbit: int = 1,
    track: int = 1,
    version: int = 2,
    shots_per_beam: int = 100,
    seed: int = 0,
    bbox: BBox = (-10.0, -10.0, 10.0, 10.0),
    pass_fraction: float = 0.6,
    fill_fraction: float = 0.05,
    beams: Mapping[str, Mapping[str, np.ndarray | None]] | None = None,
    full_layout: bool = True,
) -> Path:
    """Write one synthetic GEDI L4A granule into `directory` and return its path.

    The file is named `gedi.format_granule_name(acquisition_time, orbit, track, version)`
    (an existing file of that name is replaced).

    Without `beams`, all eight beam groups get `shots_per_beam` shots from `shot_fields`
    (deterministic for a given `seed`). With `beams` ({beam name: {field: array}}),
    exactly those beam groups are written; each given array is written verbatim (cast
    to the real dtype of a known field, so e.g. a float64 `agbd` is stored as float32),
    the fields not given are generated as by `shot_fields` with the same length (or
    `shots_per_beam` shots when no array is given), and a field given as `None` is left
    out (to build a granule that lacks a required field). Extra, unknown field names are
    written too, with their own dtype.

    `full_layout=False` skips the `agbd_prediction`, `geolocation` and
    `land_cover_data` sub-groups and `ANCILLARY` (smaller and faster; the reader of the
    product does not need them).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    acquisition_time = _as_utc(acquisition_time)
    name = format_granule_name(acquisition_time, orbit, track, version)
    path = directory / name
    chosen: Mapping[str, Mapping[str, np.ndarray | None] | None]
    chosen = beams if beams is not None else dict.fromkeys(BEAM_NAMES)
    for beam in chosen:
        _beam_id(beam)
    writer = _Writer()
    with h5py.File(path, "w") as handle:
        handle.attrs["short_name"] = "GEDI_L4A"
        if full_layout:
            _write_ancillary(handle)
        for beam in sorted(chosen, key=BEAM_NAMES.index):
            rng = np.random.default_rng([seed, BEAM_NAMES.index(beam)])
            fields, omitted = _beam_arrays(
                beam,
                chosen[beam],
                rng,
                shots=shots_per_beam,
                orbit=orbit,
                acquisition_time=acquisition_time,
                bbox=bbox,
                pass_fraction=pass_fraction,
                fill_fraction=fill_fraction,
            )
            _write_beam(writer, handle, beam, fields, omitted, rng, full_layout)
            writer.clear()
        _write_metadata(handle, name, acquisition_time, version, seed, "GEDI_L4A")
    return path


def orbit_at(moment: datetime) -> int:
    """The GEDI orbit number at `moment` (from one real orbit and the orbit period)."""
    reference_time, reference_orbit = _REFERENCE_ORBIT
    elapsed = (_as_utc(moment) - reference_time).total_seconds()
    return max(1, reference_orbit + round(elapsed / _ORBIT_PERIOD))


def write_granules(
    directory: str | Path,
    count: int,
    *,
    year: int,
    shots_per_beam: int,
    seed: int = 0,
    bbox: BBox = (-10.0, -10.0, 10.0, 10.0),
    start_doy: int = 1,
    pass_fraction: float = 0.6,
    fill_fraction: float = 0.05,
    version: int = 2,
    full_layout: bool = True,
) -> list[Path]:
    """Write `count` granules acquired in `year`, spread from day `start_doy` to year end.

    Acquisition times are distinct and increasing (whole seconds), orbits follow the
    real GEDI orbit count for those times (strictly increasing, so shot numbers are
    unique across the granules), tracks are random; granule `i` is written by
    `write_granule` with a seed derived from (`seed`, `i`). Returns the paths in time
    order.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    year_start = datetime(year, 1, 1, tzinfo=UTC)
    days = (datetime(year + 1, 1, 1, tzinfo=UTC) - year_start).days
    if not 1 <= start_doy <= days:
        raise ValueError(f"start_doy {start_doy} is not a day of {year}")
    rng = np.random.default_rng([seed, count, year])
    span = (days - start_doy + 1) * 86400.0
    first = year_start + timedelta(days=start_doy - 1)
    seeds = np.random.SeedSequence([seed, year]).generate_state(max(count, 1))
    paths: list[Path] = []
    previous_orbit = 0
    for index in range(count):
        seconds = (index + rng.uniform(0.05, 0.95)) * span / count
        moment = first + timedelta(seconds=int(seconds))
        orbit = max(orbit_at(moment), previous_orbit + 1)
        previous_orbit = orbit
        paths.append(
            write_granule(
                directory,
                moment,
                orbit=orbit,
                track=int(rng.integers(1, 4500)),
                version=version,
                shots_per_beam=shots_per_beam,
                seed=int(seeds[index]),
                bbox=bbox,
                pass_fraction=pass_fraction,
                fill_fraction=fill_fraction,
                full_layout=full_layout,
            )
        )
    return paths


def truncate_file(path: str | Path, keep_fraction: float = 0.5) -> Path:
    """Cut `path` to `keep_fraction` of its size in place (an interrupted download)."""
    if not 0.0 <= keep_fraction < 1.0:
        raise ValueError(f"keep_fraction must be in [0, 1), got {keep_fraction}")
    path = Path(path)
    os.truncate(path, int(path.stat().st_size * keep_fraction))
    return path


_L2A_FIELDS: dict[str, Attrs] = {
    "quality_flag": {
        "coordinates": _C3,
        "description": "Flag simplifying selection of most useful data",
        "long_name": "Quality Flag",
        "units": "-",
        "valid_range": (0, 1),
    },
    "rh": {
        "coordinates": _C3,
        "description": "Relative height metrics at 1 % interval",
        "long_name": "Relative height metrics",
        "units": "m",
    },
}


def write_non_l4a_granule(
    directory: str | Path,
    acquisition_time: datetime,
    *,
    orbit: int = 1,
    track: int = 1,
    shots_per_beam: int = 20,
    seed: int = 0,
) -> Path:
    """A valid HDF5 file with an L4A-style name but GEDI L2A content.

    Root `short_name` is `GEDI_L2A`, `METADATA/DatasetIdentification/shortName` too, and
    the eight beams hold L2A datasets (`lat_lowestmode`, `lon_lowestmode`,
    `shot_number`, `delta_time`, `quality_flag`, `rh`, …) but no `agbd`, `agbd_se`,
    `l2_quality_flag` or `l4_quality_flag`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    acquisition_time = _as_utc(acquisition_time)
    name = format_granule_name(acquisition_time, orbit, track, 2)
    path = directory / name
    keep = (
        "beam", "channel", "degrade_flag", "delta_time", "elev_lowestmode", "lat_lowestmode",
        "lon_lowestmode", "master_frac", "master_int", "selected_algorithm", "selected_mode",
        "sensitivity", "shot_number", "solar_elevation", "surface_flag",
    )  # fmt: skip
    writer = _Writer()
    with h5py.File(path, "w") as handle:
        handle.attrs["short_name"] = "GEDI_L2A"
        for index, beam in enumerate(BEAM_NAMES):
            rng = np.random.default_rng([seed, index])
            fields = shot_fields(
                shots_per_beam, rng, orbit=orbit, beam=beam, acquisition_time=acquisition_time
            )
            group = handle.create_group(beam)
            group.attrs["description"] = (
                "Coverage beam" if beam in COVERAGE_BEAMS else "Full power beam"
            )
            for field in keep:
                writer.dataset(group, field, fields[field], _BEAM_FIELDS[field][1])
            quality = (fields["l2_quality_flag"] & fields["surface_flag"]).astype(np.uint8)
            writer.dataset(group, "quality_flag", quality, _L2A_FIELDS["quality_flag"])
            heights = np.sort(rng.uniform(-5.0, 30.0, (shots_per_beam, 101)), axis=1)
            writer.dataset(group, "rh", heights.astype(np.float32), _L2A_FIELDS["rh"])
            writer.clear()
        _write_metadata(handle, name, acquisition_time, 2, seed, "GEDI_L2A")
    return path
