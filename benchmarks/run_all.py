"""`make bench`: every benchmark script, one after another (each writes its JSON to benchmarks/out/)."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [["demo.py", "--cold"], ["cache_load.py"],
           ["efficiency.py"],  # each stage's tokens/s against the measured matmul peak, HF and vLLM, both models
           ["round_time.py"],  # where a round's time goes: HF vs vLLM, 1 vs 2 generation actors, stage shares
           ["train_sync.py"]]  # per-round train/sync cost: torch LoRA vs 2 DeepSpeed ranks vs full fine-tuning

for script, *args in SCRIPTS:
    print(f"== {script} {' '.join(args)}", flush=True)
    rc = subprocess.call([sys.executable, str(HERE / script), *args])
    if rc:
        sys.exit(rc)
