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
