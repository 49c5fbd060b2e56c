#!/usr/bin/env bash
# The whole GPU check as one call on a lent GPU machine (the `device` tool), whose image has torch and transformers
# but may lack peft / deepspeed and cannot reach PyPI: what the image has, the missing pure-Python packages installed
# from a carried wheel folder into a scratch folder, then benchmarks/gpu_check.py (its table is printed and written
# to $OUT/gpu_check.json).
#
#   here:       pip download/wheel the wheels into gpu_wheels/ (ignored by git; see benchmarks/README.md)
#   on the GPU: bash benchmarks/gpu_run.sh gpu_wheels        (with gpu_wheels carried)
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${1:-gpu_wheels}
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

$PY - <<'EOF'
import importlib.util, platform, sys
import torch, transformers
print(f"python {platform.python_version()}  torch {torch.__version__}  transformers {transformers.__version__}  "
      f"cuda {torch.cuda.is_available()} {torch.version.cuda}  "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''}")
for m in ("peft", "accelerate", "deepspeed", "yaml", "numpy", "safetensors", "pydantic", "scipy"):
    print(f"  {m}: {'yes' if importlib.util.find_spec(m) else 'MISSING'}")
EOF

# module -> the wheels it needs (installed with --no-deps, only where the module is missing)
declare -A NEED=(
  [peft]="peft accelerate psutil"
  [deepspeed]="deepspeed hjson ninja py_cpuinfo msgpack einops pydantic pydantic_core annotated_types typing_inspection"
)
missing=()
for mod in peft deepspeed; do
  $PY -c "import $mod" 2>/dev/null || missing+=(${NEED[$mod]})
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ -d "$WHEELS" ]; then
    keep=()
    for pkg in "${missing[@]}"; do
      mod=$pkg; case $pkg in py_cpuinfo) mod=cpuinfo;; annotated_types) mod=annotated_types;; esac
      $PY -c "import $mod" 2>/dev/null || keep+=("$pkg")
    done
    echo "installing from $WHEELS: ${keep[*]}"
    $PY -m pip install -q --no-index --no-deps --find-links "$WHEELS" --target /tmp/svgap-gpu-deps "${keep[@]}" \
      || echo "pip install failed: the rows needing ${keep[*]} will say so"
    export PYTHONPATH=/tmp/svgap-gpu-deps${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "missing ${missing[*]} and no wheel folder $WHEELS: their rows will FAIL/SKIP with the reason"
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
$PY benchmarks/gpu_check.py --out "$OUT/gpu_check.json" "${@:2}"
