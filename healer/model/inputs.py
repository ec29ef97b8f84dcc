"""What the model is shown: the service's chat prompt around one image, as tensors.

Serving and fine-tuning both build their inputs here, so an adapter is trained on exactly the
prompt the service sends: the system turn, the image, the question, then the model's turn.
Fine-tuning appends the answer it teaches after that turn's opening (`answers=`).
"""

from collections.abc import Sequence

from PIL import Image

from healer.text.prompts import SYSTEM_PROMPT

END_OF_TURN = "<end_of_turn>"


def chat_prompt(processor, question: str) -> str:
    """The service's prompt for one image and question, ending where the model's answer starts."""
    return processor.apply_chat_template(
        [
            {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
        ],
        add_generation_prompt=True,
        tokenize=False,
    )


def model_inputs(processor, images: Sequence[Image.Image], questions: Sequence[str], device, dtype,
                 answers: Sequence[str] | None = None):
    """Left-padded tensors for a batch (right padding breaks batched first-token logits).
    With `answers`, each row continues with its answer and the end of the model's turn."""
    texts = [chat_prompt(processor, question) for question in questions]
    if answers is not None:
        texts = [text + answer + END_OF_TURN for text, answer in zip(texts, answers, strict=True)]
    # The template already starts with <bos>: the processor must not add a second one.
    inputs = processor(
        text=texts,
        images=[[image] for image in images],
        padding=True,
        add_special_tokens=False,
        return_tensors="pt",
    ).to(device)
    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    return inputs
