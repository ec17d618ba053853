#!/usr/bin/env bash
# MSRA NER stage 1: fine-tune the teacher (token classification).  Edit the variables below.
set -euo pipefail
MODEL=${MODEL:-bert-base-chinese}          # PaddleNLP name (online), a model directory, or a directory with only
                                           # config.json + vocab.txt (starts from random initialisation)
DATA_DIR=${DATA_DIR:-}                     # msra_train.txt/msra_test.txt or train/dev/test.tsv; empty = paddlenlp's msra_ner
OUTPUT_DIR=${OUTPUT_DIR:-../tmp/msra_ner}
DEVICE=${DEVICE:-gpu}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-128}
BATCH_SIZE=${BATCH_SIZE:-32}
LEARNING_RATE=${LEARNING_RATE:-2e-5}
EPOCHS=${EPOCHS:-30}
LOGGING_STEPS=${LOGGING_STEPS:-1}
SAVE_STEPS=${SAVE_STEPS:-500}
cd "$(dirname "$0")/.."
python -u ./run_msra_ner.py --model_name_or_path "$MODEL" ${DATA_DIR:+--data_dir "$DATA_DIR"} \
    --max_seq_length "$MAX_SEQ_LENGTH" --batch_size "$BATCH_SIZE" --learning_rate "$LEARNING_RATE" \
    --num_train_epochs "$EPOCHS" --logging_steps "$LOGGING_STEPS" --save_steps "$SAVE_STEPS" \
    --output_dir "$OUTPUT_DIR" --device "$DEVICE" "$@"
