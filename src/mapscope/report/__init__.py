"""Figures: arrays in, matplotlib Figures out. No numerics here."""
