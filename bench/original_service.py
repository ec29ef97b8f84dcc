"""The original project's serving settings, reproduced as the benchmark's baseline.

fp32 weights on the CPU, `max_new_tokens=100`, and `generate` called straight from the async
endpoint: it blocks the event loop, so requests run one at a time and even the health check
waits behind them. Same model directory, same prompt, same API shape (`{"prediction": ...}`).

    MODEL_DIR=... PORT=8081 python -m bench.original_service
"""

import io
import os

import torch
from fastapi import FastAPI, File, UploadFile
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from healer.text.prompts import DEFAULT_QUESTION, SYSTEM_PROMPT

MODEL_DIR = os.environ.get("MODEL_DIR", "medgemma-model")
processor = AutoProcessor.from_pretrained(MODEL_DIR)
model = AutoModelForImageTextToText.from_pretrained(MODEL_DIR, dtype=torch.float32).eval()
app = FastAPI()


@app.get("/")
async def health():
    return {"status": "ok"}


@app.post("/predict")
async def predict(image_file: UploadFile = File(...)):
    image = Image.open(io.BytesIO(await image_file.read())).convert("RGB")
    messages = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "image", "image": image},
                                     {"type": "text", "text": DEFAULT_QUESTION}]},
    ]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=100, do_sample=False)
    text = processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return {"prediction": text}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8081")))
