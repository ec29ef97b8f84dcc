"""What the demo models say: a random Gemma 3's output rows tilted so that it answers yes or no
first, with the image deciding which, and then writes one short sentence; or, scripted, writes the
same opening on every image. Every branch of the answer path then runs on real Gemma 3 tokens. The
weights stay random and the answers meaningless.

How: the decoder's layers are damped so that the last position's hidden state is mostly the last
token's own input embedding (with the prompt and the image mixed in), which makes the output rows
a table of what follows which token (`_follow`). A random model spreads its probability evenly
over the 262,144 pieces, so a successor needs about ln(262,144) ≈ 12.5 logits (CROWD) to be likely.
"""

import math

import torch
from PIL import Image
from transformers import Gemma3ForConditionalGeneration, Gemma3Processor, PreTrainedTokenizerBase

from healer.text.answer_step import token_label
from healer.text.prompts import DEFAULT_QUESTION, SYSTEM_PROMPT

CROWD = math.log(262_144)

# Scripted openings: models that write the same words before (or instead of) their answer on
# every image, to test that P(yes) is read where the answer word is generated. Each is how Gemma 3's
# tokenizer splits the text.
OPENINGS: dict[str, tuple[list[str], list[str] | None]] = {
    # name: (the tokens before the answer, the answer's yes and no tokens; None: no answer)
    "bold": (["**"], ["Yes", "No"]),  # "**Yes." answers at step 1
    "phrase": (["Based", "▁on", "▁the", "▁image", ","], ["▁yes", "▁no"]),  # answers at step 5
    "never": (["I", "▁cannot", "▁tell", "▁from", "▁this", "▁image", "."], None),  # never answers
}

# The default demo's pull towards answering at once: this many logits on every yes/no piece after
# the prompt puts the answer mass around MIN_ANSWER_MASS (0.5), varying with the image, so the
# service's tests see yes, no and uncertain answers.
ANSWER_PULL = CROWD - 1.4
# How strongly the image decides between yes and no (see answer_by_image).
IMAGE_SWAY = 3.0
EOSIN, HAEMATOXYLIN = (230, 150, 200), (110, 80, 170)  # the two reference images' colours
# Its one-sentence explanations: "The <noun> <verb> <adjective>.", each word picked among these by
# the random weights (so by the image and the prompt), as Gemma 3 splits them mid-sentence.
SENTENCE = [["▁The"], ["▁glands", "▁cells", "▁nuclei", "▁mucosa", "▁epithelium"], ["▁are", "▁look"],
            ["▁regular", "▁crowded", "▁irregular", "▁dense", "▁benign"], ["."]]

def answer_pieces(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Every piece of the vocabulary that is a yes or a no ("Yes", "▁no", "YES"…)."""
    return sorted(piece for piece in tokenizer.get_vocab() if token_label(piece))


def _damp_layers(model: Gemma3ForConditionalGeneration) -> None:
    """Gemma 3's post-norms scale each layer's output by 1 + weight, and the input embedding is
    scaled up: the last hidden state becomes mostly the last token's embedding."""
    for layer in model.model.language_model.layers:
        layer.post_attention_layernorm.weight.fill_(-0.7)
        layer.post_feedforward_layernorm.weight.fill_(-0.7)
    model.get_input_embeddings().weight.mul_(10)


def _follow(model, tokenizer, rules: list[tuple[str, str, float]]) -> None:
    """For each (token, successor, logits): raise `successor`'s logit by about `logits` wherever
    `token` is the last input, and by about nothing where another token of the rules is. Each
    rule adds to the successor's output row the dual of the token's embedding among the rules'
    tokens (the embeddings' pseudo-inverse), not the embedding itself: in 64 dimensions random
    embeddings overlap enough that a successor pulled after several tokens would be pulled
    after the others too."""
    ids = tokenizer.convert_tokens_to_ids
    tokens = sorted({token for token, _, _ in rules})
    embeddings = model.get_input_embeddings().weight[ids(tokens)].float()
    duals = torch.linalg.pinv(embeddings / embeddings.norm(dim=1, keepdim=True)).T  # row i · unit embedding j = [i = j]
    output = model.get_output_embeddings().weight
    scale = output.shape[1] ** 0.5  # the final norm leaves the hidden state at unit RMS
    for token, successor, logits in rules:
        output[ids(successor)] += (logits / scale * duals[tokens.index(token)]).to(output.dtype)


@torch.no_grad()
def answer_then_explain(model, tokenizer) -> None:
    """The default demo: yes or no first (ANSWER_PULL each), then "." and one SENTENCE."""
    _damp_layers(model)
    rules = []
    for piece in answer_pieces(tokenizer):
        rules.append(("\n", piece, ANSWER_PULL))  # the prompt ends "<start_of_turn>model\n"
        rules.append((piece, ".", CROWD + 6.0))  # "Yes." then the explanation
    for words, following in zip([["."], *SENTENCE], SENTENCE):
        rules += [(word, successor, CROWD + 6.0) for word in words for successor in following]
    _follow(model, tokenizer, rules)


@torch.no_grad()
def script(model, tokenizer, opening: str) -> None:
    """Make the model a chain (OPENINGS[opening]): each token's successor is fixed, whatever the
    image, except the choice between yes and no at the answer step (the yes token gets 1.2 logits
    more)."""
    before, answer = OPENINGS[opening]
    chain = ["\n", *before]
    successors = {a: [b] for a, b in zip(chain, chain[1:])}
    if answer is None:
        successors[chain[-1]] = ["<end_of_turn>"]
    else:
        successors[chain[-1]] = answer
        successors.update({word: ["."] for word in answer})
        successors["."] = ["<end_of_turn>"]
    _damp_layers(model)
    _follow(model, tokenizer, [
        (token, successor, CROWD + 6.0 + (1.2 if rank == 0 and len(following) == 2 else 0.0))
        for token, following in successors.items() for rank, successor in enumerate(following)
    ])


@torch.no_grad()
def answer_by_image(model: Gemma3ForConditionalGeneration, processor: Gemma3Processor) -> None:
    """Let the image pick yes or no: the yes rows move along the direction from the hidden state
    a plain haematoxylin-purple image leaves after the prompt to the one an eosin-pink image
    leaves, the no rows against it, with what both share removed. Pinker tiles lean yes, more
    purple ones no, by up to ~IMAGE_SWAY logits: meaningless, but the image decides."""
    messages = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": DEFAULT_QUESTION}]},
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    colours = [EOSIN, HAEMATOXYLIN]
    inputs = processor(text=[text] * 2, images=[[Image.new("RGB", (64, 64), c)] for c in colours],
                       add_special_tokens=False, return_tensors="pt")
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    pink, purple = model.model(**inputs).last_hidden_state[:, -1].float()
    middle = (pink + purple) / 2
    direction = pink - purple
    direction -= (direction @ middle) / (middle @ middle) * middle
    sway = IMAGE_SWAY * direction / (direction @ pink)  # the pink image: +IMAGE_SWAY for yes
    ids = processor.tokenizer.convert_tokens_to_ids
    output = model.get_output_embeddings().weight
    for piece in answer_pieces(processor.tokenizer):
        sign = 0.5 if token_label(piece) == "yes" else -0.5
        output[ids(piece)] += (sign * sway).to(output.dtype)
