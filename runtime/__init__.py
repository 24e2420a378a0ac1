"""How the suite runs, apart from what it computes: the Keras backend and a quiet library
start-up (backend.py), files written atomically (files.py), worker processes that end with
their parent (processes.py), and a description of the machine for provenance (machine.py)."""
