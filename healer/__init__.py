"""Healer: MedGemma 4B as a colorectal-cancer screening aid for H&E histopathology images.

    api/          the HTTP edge: app factory and lifespan, routers, middleware, error JSON
    model/        the engine interface, the transformers engine, the fake, the demo model,
                  the model directory and the Hub download
    screening/    one image's question: service, batching, cache, decoding, answer rule, prompts
    slides/       whole slides: reading, tissue, tiles, jobs (store, runner, life cycle), heatmap
    evaluation/   a labelled folder of tiles, metrics with intervals, the ROC plot
    evaluate.py   the evaluation command (python -m healer.evaluate)
    finetuning/   LoRA on a labelled folder: the split, the training, the adapter's card
    finetune.py   the fine-tuning command (python -m healer.finetune)
    tools/        what the tests and the benchmark share
    settings.py, errors.py, logs.py, metrics.py   what every section uses
"""

import os

# torch's CPU threads (OpenMP) spin ~300k iterations at each barrier before sleeping: on 2 CPUs
# shared with the event loop or anything else, a waiting thread burns the CPU its partner needs,
# and a decode step (hundreds of small parallel calls) pays a scheduler time slice per call.
# Measured at full size under load ~5: int8 decode 0.90 s/token passive vs 1.71 spinning, the
# prefill 33 s vs 53 s (docs/performance.md). OpenMP reads this once, when torch loads it, and
# every entry point imports this package before torch. An explicit setting still wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
