#!/usr/bin/env bash
# MSRA NER stage 3: cut one width out of the NER supernet; dynamic + static models, checked on dev sentences.
set -euo pipefail
WIDTH=${WIDTH:-0.5}
OFA_DIR=${OFA_DIR:-../tmp/msra_ner_ofa}
MODEL=${MODEL:-$OFA_DIR/model_$WIDTH}           # the best checkpoint of that width (upstream's model_{width} name)
DATA_DIR=${DATA_DIR:-}                           # the NER data: the export check runs on its dev sentences
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-128}
DEVICE=${DEVICE:-gpu}
cd "$(dirname "$0")/.."
python -u ./export_model.py --model_type bert --model_name_or_path "$MODEL" --max_seq_length "$MAX_SEQ_LENGTH" \
    --sub_model_output_dir "$MODEL/dynamic_model" --static_sub_model "$MODEL/static_model" --width_mult "$WIDTH" \
    ${DATA_DIR:+--data_dir "$DATA_DIR"} --device "$DEVICE" "$@"
