"""Argument types shared by the command-line jobs."""

from __future__ import annotations

import argparse


def parse_sensor_size(text: str) -> tuple[int, int, int]:
    """``WxHxP`` (or ``W,H,P``) -> (W, H, P)."""
    parts = text.replace(",", "x").split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"sensor size {text!r} is not WxHxP, e.g. 34x34x2")
    width, height, polarities = (int(p) for p in parts)
    return width, height, polarities
