"""HDF5 checkpoint format and the Lightning CheckpointIO plugin."""
