"""Fine-tuning the served model on a lab's own labelled tiles (python -m healer.finetune).

    data.py    the training/validation split and the answer each tile is taught
    train.py   LoRA (peft) on every linear layer plus the projector, early stopping on validation loss
    card.py    healer-adapter.json: base model, data, settings, validation metrics, threshold
"""
