"""Events to tensors (frames, voxel grids, time surfaces, filters); values to spikes.

Pure functions take `EVENT_DTYPE` arrays and check them (dtype, time order, sensor bounds) at
the boundary, raising `EventsError`; the tonic-compatible callables in
`eventsnn.encoding.transforms` (`ToFrame`, `Denoise`, ...) wrap them with tonic's class and
parameter names and also accept tonic's dataset dtypes. Value encoders live in `values`.
"""

from eventsnn.encoding import transforms, values
from eventsnn.encoding.augment import (
    drop_area,
    drop_events,
    drop_time_interval,
    spatial_jitter,
    time_jitter,
)
from eventsnn.encoding.filters import (
    decimate,
    decimation_mask,
    denoise,
    denoise_mask,
    refractory_mask,
    refractory_period,
    select,
)
from eventsnn.encoding.frames import to_frame, to_image
from eventsnn.encoding.geometry import (
    align_time,
    center_crop_origin,
    crop,
    crop_time,
    downsample,
    flip_lr,
    flip_polarity,
    flip_ud,
    merge_polarities,
    rotate,
    time_reversal,
    time_skew,
)
from eventsnn.encoding.surfaces import to_timesurface
from eventsnn.encoding.voxel import to_voxel_grid

__all__ = [
    "center_crop_origin",
    "crop",
    "crop_time",
    "denoise",
    "denoise_mask",
    "decimate",
    "decimation_mask",
    "downsample",
    "drop_area",
    "drop_events",
    "drop_time_interval",
    "flip_lr",
    "flip_polarity",
    "flip_ud",
    "merge_polarities",
    "refractory_mask",
    "refractory_period",
    "rotate",
    "time_skew",
    "align_time",
    "select",
    "spatial_jitter",
    "time_jitter",
    "time_reversal",
    "to_frame",
    "to_image",
    "to_timesurface",
    "to_voxel_grid",
    "transforms",
    "values",
]
