"""Spiking layers in torch.nn style."""
