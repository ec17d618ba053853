#!/usr/bin/env bash
# Stage 1: fine-tune the teacher on a GLUE task.  Edit the variables below.
set -euo pipefail
TASK_NAME=${TASK_NAME:-SST-2}
MODEL=${MODEL:-bert-base-uncased}          # PaddleNLP name (online) or a local directory
DATA_DIR=${DATA_DIR:-}                     # GLUE files (DATA_DIR/TASK/train.tsv ...); empty = paddlenlp hub copy
OUTPUT_DIR=${OUTPUT_DIR:-./tmp/$TASK_NAME}
DEVICE=${DEVICE:-gpu}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-128}
BATCH_SIZE=${BATCH_SIZE:-32}
LEARNING_RATE=${LEARNING_RATE:-2e-5}
EPOCHS=${EPOCHS:-3}
cd "$(dirname "$0")/.."
python -u ./run_glue.py --model_type bert --model_name_or_path "$MODEL" --task_name "$TASK_NAME" \
    ${DATA_DIR:+--data_dir "$DATA_DIR"} --max_seq_length "$MAX_SEQ_LENGTH" --batch_size "$BATCH_SIZE" \
    --learning_rate "$LEARNING_RATE" --num_train_epochs "$EPOCHS" --logging_steps 1 --save_steps 500 \
    --output_dir "$OUTPUT_DIR" --device "$DEVICE" "$@"
