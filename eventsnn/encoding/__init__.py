"""Events to tensors (frames, voxel grids, time surfaces, filters); values to spikes.

Pure functions (`to_frame`, `to_voxel_grid`, `denoise`, ...) take validated `EVENT_DTYPE` arrays;
the tonic-compatible callables in `eventsnn.encoding.transforms` (`ToFrame`, `Denoise`, ...)
wrap them with tonic's class and parameter names.
"""

from eventsnn.encoding.filters import (
    denoise,
    denoise_mask,
    refractory_mask,
    refractory_period,
    select,
)
from eventsnn.encoding.frames import to_frame, to_image
from eventsnn.encoding.voxel import to_voxel_grid

__all__ = [
    "denoise",
    "denoise_mask",
    "refractory_mask",
    "refractory_period",
    "select",
    "to_frame",
    "to_image",
    "to_voxel_grid",
]
