"""Turns a network into a frame function: device, precision, padding, channel order."""
