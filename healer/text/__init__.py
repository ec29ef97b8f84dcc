"""Text shared by every engine and the screening answer: the prompts, and where the answer is in
a model's output. Imports nothing else of Healer, so model/ and screening/ both depend on it and
not on each other."""
