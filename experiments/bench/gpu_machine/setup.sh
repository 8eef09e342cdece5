# Sourced by check.sh and study.sh on a GPU machine without flwr, Hydra or a registry: install
# the wheels that prepare.sh put in gpu-carry/, put Fashion-MNIST where fedwsa looks first, and
# log what the machine is. Needs PY and LOG; defines step.
export PYTHONUNBUFFERED=1 FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
step() { echo "== $* ($(date +%T))" | tee -a "$LOG"; }
step install
"$PY" -m pip install -q --no-index --no-deps gpu-carry/wheels/*.whl 2>&1 | grep -v -i "warning" | tee -a "$LOG"
fmnist=/usr/share/datasets/fashion-mnist
[ -f "$fmnist/train-images-idx3-ubyte.gz" ] || { mkdir -p "$fmnist" && cp gpu-carry/fmnist/*.gz "$fmnist/"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG"
"$PY" -c "import torch, flwr, hydra; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', 'flwr', flwr.__version__)" 2>&1 | tee -a "$LOG"
