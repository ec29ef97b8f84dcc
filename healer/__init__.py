"""Healer: MedGemma 4B as a colorectal-cancer screening aid for H&E histopathology images."""
