# The two commands the README promises, and the set-up they share.
.PHONY: run test setup

run:  ## Serve on :8080 (MedGemma if available, else the demo model, loudly)
	scripts/serve.sh

test:  ## Every test, as CI runs it
	scripts/test.sh

setup:
	scripts/setup.sh
