#!/usr/bin/env bash
# Stage 3: cut one width out of the OFA supernet; dynamic + static models, checked.
set -euo pipefail
TASK_NAME=${TASK_NAME:-SST-2}
WIDTH=${WIDTH:-0.6666666666666666}
OFA_DIR=${OFA_DIR:-./tmp/$TASK_NAME-ofa}
# the best checkpoint of that width is $OFA_DIR/width_<w:.4f> (e.g. width_0.6667); final/ holds the last supernet
MODEL=${MODEL:-$OFA_DIR/width_0.6667}
DATA_DIR=${DATA_DIR:-}
DEVICE=${DEVICE:-gpu}
cd "$(dirname "$0")/.."
python -u ./export_model.py --model_type bert --model_name_or_path "$MODEL" --max_seq_length 128 \
    --sub_model_output_dir "./tmp/$TASK_NAME/dynamic_model" --static_sub_model "./tmp/$TASK_NAME/static_model" \
    ${DATA_DIR:+--data_dir "$DATA_DIR"} --device "$DEVICE" --width_mult "$WIDTH" "$@"
