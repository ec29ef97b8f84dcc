"""One image's screening question, from uploaded bytes to a yes / no / uncertain answer."""
