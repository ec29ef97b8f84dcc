"""Evaluation on a labelled folder of tiles: the folder, the metrics, the plot. The command is healer.evaluate."""
