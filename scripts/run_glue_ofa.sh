#!/usr/bin/env bash
# Stage 2: OFA width-adaptive distillation of the fine-tuned teacher.  Edit the variables below.
set -euo pipefail
TASK_NAME=${TASK_NAME:-SST-2}
TEACHER=${TEACHER:-./tmp/$TASK_NAME/best}  # written by run_glue.sh
DATA_DIR=${DATA_DIR:-}
OUTPUT_DIR=${OUTPUT_DIR:-./tmp/$TASK_NAME-ofa}
DEVICE=${DEVICE:-gpu}
WIDTHS=${WIDTHS:-"1.0 0.8333333333333334 0.6666666666666666 0.5"}
BATCH_SIZE=${BATCH_SIZE:-32}
LEARNING_RATE=${LEARNING_RATE:-2e-5}
EPOCHS=${EPOCHS:-6}
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
python -u ./run_glue_ofa.py --model_type bert --model_name_or_path "$TEACHER" --task_name "$TASK_NAME" \
    ${DATA_DIR:+--data_dir "$DATA_DIR"} --max_seq_length 128 --batch_size "$BATCH_SIZE" \
    --learning_rate "$LEARNING_RATE" --num_train_epochs "$EPOCHS" --logging_steps 10 --save_steps 100 \
    --output_dir "$OUTPUT_DIR" --device "$DEVICE" --width_mult_list $WIDTHS "$@"
