"""One module per paper table or figure; each declares what to run, runner.py runs it."""
