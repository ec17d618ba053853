#!/usr/bin/env bash
# MSRA NER stage 2: OFA width-adaptive distillation of the NER teacher.  Edit the variables below.
set -euo pipefail
TEACHER=${TEACHER:-../tmp/msra_ner/model_best}   # written by run_msra_ner.sh
DATA_DIR=${DATA_DIR:-}
OUTPUT_DIR=${OUTPUT_DIR:-../tmp/msra_ner_ofa}
DEVICE=${DEVICE:-gpu}
WIDTHS=${WIDTHS:-"1.0 0.8333333333333334 0.6666666666666666 0.5"}
DEPTHS=${DEPTHS:-"1.0"}                          # e.g. "1.0 0.5" adds DynaBERT depths
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-128}
BATCH_SIZE=${BATCH_SIZE:-32}
LEARNING_RATE=${LEARNING_RATE:-2e-5}
EPOCHS=${EPOCHS:-30}
LOGGING_STEPS=${LOGGING_STEPS:-1}
SAVE_STEPS=${SAVE_STEPS:-100}
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
python -u ./run_msra_ner_ofa.py --model_type bert --model_name_or_path "$TEACHER" --task_name msra \
    ${DATA_DIR:+--data_dir "$DATA_DIR"} --max_seq_length "$MAX_SEQ_LENGTH" --batch_size "$BATCH_SIZE" \
    --learning_rate "$LEARNING_RATE" --num_train_epochs "$EPOCHS" --logging_steps "$LOGGING_STEPS" \
    --save_steps "$SAVE_STEPS" --output_dir "$OUTPUT_DIR" --device "$DEVICE" \
    --width_mult_list $WIDTHS --depth_mult_list $DEPTHS "$@"
