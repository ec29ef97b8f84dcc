"""The words Healer says to the model and to its users."""

SYSTEM_PROMPT = (
    "You are a careful pathology assistant supporting colorectal-cancer screening of H&E "
    "histopathology images. You are a screening aid, not a diagnostic tool. Answer the question "
    "with yes or no first, then give a one-sentence explanation based only on what the image shows."
)

DEFAULT_QUESTION = (
    "Is colorectal cancer (adenocarcinoma) present in this histopathology image? "
    "Answer yes or no, then give a one-sentence explanation."
)

DISCLAIMER = (
    "Screening aid only, not a diagnosis. A qualified pathologist must review every case; "
    "do not use this output alone for clinical decisions."
)

DEMO_WARNING = (
    "DEMO MODEL: random weights, not MedGemma. Answers are meaningless; "
    "set HF_TOKEN and run download.py to serve the real model."
)
