"""Events to tensors (frames, voxel grids, time surfaces, filters); values to spikes."""
