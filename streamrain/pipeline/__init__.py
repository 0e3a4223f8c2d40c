"""Stages joined by bounded queues: decode -> batch -> derain -> encode."""
